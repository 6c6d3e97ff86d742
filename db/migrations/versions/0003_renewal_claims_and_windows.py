"""Renewal: per-application claims and last outcome, renew_after per certificate, a meta table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 17:00:23.027753
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('meta',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_meta'))
    )
    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('renewal_claimed_by', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('renewal_claimed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_renewal_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_renewal_status', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('last_renewal_error', sa.Text(), nullable=True))

    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('renew_after', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_certificates_status_renew_after', ['status', 'renew_after'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.drop_index('ix_certificates_status_renew_after')
        batch_op.drop_column('renew_after')

    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.drop_column('last_renewal_error')
        batch_op.drop_column('last_renewal_status')
        batch_op.drop_column('last_renewal_at')
        batch_op.drop_column('renewal_claimed_at')
        batch_op.drop_column('renewal_claimed_by')

    op.drop_table('meta')
