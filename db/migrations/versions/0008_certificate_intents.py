"""Certificate intents: a pending certificate names the change in progress, its owner and the pair it replaces.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 06:10:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('intent', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('intent_owner', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('intent_previous', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('intent_store', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('intent_layout', sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.drop_column('intent_layout')
        batch_op.drop_column('intent_store')
        batch_op.drop_column('intent_previous')
        batch_op.drop_column('intent_owner')
        batch_op.drop_column('intent')
