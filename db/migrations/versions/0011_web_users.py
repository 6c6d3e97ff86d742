"""Web console users: name, role and a scrypt password hash.

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-02 11:45:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'web_users',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('password_hash', sa.String(length=400), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_web_users')),
        sa.UniqueConstraint('name', name=op.f('uq_web_users_name')),
    )


def downgrade() -> None:
    op.drop_table('web_users')
