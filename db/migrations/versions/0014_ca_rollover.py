"""CA generations for rollover: each authority row is one CA generation with its number and its role.

role: "signing" (the CA certmgr issues with; exactly one), "next" (created by `ca rollover start`, trusted and
published, not yet signing), "previous" (signed before the last advance; still trusted and its CRL published until
`ca rollover finish`), "retired" (removed from stores).

Revision ID: 0014
Revises: 0017_gds_key_pairs
Create Date: 2026-12-02 14:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = "0017_gds_key_pairs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('authorities') as batch:
        batch.add_column(sa.Column('generation', sa.Integer(), nullable=False, server_default='1'))
        batch.add_column(sa.Column('role', sa.String(length=16), nullable=False, server_default='signing'))
        batch.add_column(sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True))
        batch.create_index('ix_authorities_role', ['role'])


def downgrade() -> None:
    with op.batch_alter_table('authorities') as batch:
        batch.drop_index('ix_authorities_role')
        batch.drop_column('retired_at')
        batch.drop_column('role')
        batch.drop_column('generation')
