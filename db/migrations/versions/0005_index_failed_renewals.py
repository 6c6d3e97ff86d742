"""Index applications.last_renewal_status: the expiry scan finds failed renewals without a table scan.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 19:11:54.386247
"""

from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_applications_last_renewal_status'), ['last_renewal_status'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_applications_last_renewal_status'))

