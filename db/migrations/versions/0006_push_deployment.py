"""Push deployment: how a certificate reaches an application (file or Part 12 push) and its admin user.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 19:16:43.882780
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deploy', sa.String(length=8), server_default='file', nullable=False))
        batch_op.add_column(sa.Column('admin_user', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('admin_password_file', sa.Text(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.drop_column('admin_password_file')
        batch_op.drop_column('admin_user')
        batch_op.drop_column('deploy')

