"""Web console sessions and failed sign-ins in the database, so a restart of the console keeps both.

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-02 14:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = "0012_gds"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'web_sessions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('user_name', sa.String(length=100), nullable=False),
        sa.Column('csrf', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_web_sessions')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_web_sessions_token_hash')),
    )
    op.create_index(op.f('ix_web_sessions_user_name'), 'web_sessions', ['user_name'], unique=False)
    op.create_index(op.f('ix_web_sessions_seen_at'), 'web_sessions', ['seen_at'], unique=False)
    op.create_table(
        'web_login_failures',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_name', sa.String(length=200), nullable=False),
        sa.Column('address', sa.String(length=64), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_web_login_failures')),
    )
    op.create_index('ix_web_login_failures_user_address', 'web_login_failures', ['user_name', 'address'], unique=False)
    op.create_index(op.f('ix_web_login_failures_at'), 'web_login_failures', ['at'], unique=False)


def downgrade() -> None:
    op.drop_table('web_login_failures')
    op.drop_table('web_sessions')
