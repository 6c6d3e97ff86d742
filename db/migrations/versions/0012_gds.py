"""GDS (Part 12 pull): its users with Part 12 roles, the certificate requests made to it, one-time
enrolment tokens, and when an application was unregistered.

Revision ID: 0012_gds
Revises: 0011
Create Date: 2026-12-02 14:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0012_gds'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'gds_users',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('role', sa.String(length=32), nullable=False),
        sa.Column('password_hash', sa.String(length=400), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_gds_users')),
        sa.UniqueConstraint('name', name=op.f('uq_gds_users_name')),
    )
    op.create_table(
        'gds_requests',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('application_id', sa.Integer(), nullable=False),
        sa.Column('csr_der', sa.LargeBinary(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('requested_by', sa.String(length=200), nullable=False),
        sa.Column('self_renewal', sa.Boolean(), nullable=False),
        sa.Column('decided_by', sa.String(length=200), nullable=True),
        sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('certificate_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['application_id'], ['applications.id'], name=op.f('fk_gds_requests_application_id_applications'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['certificate_id'], ['certificates.id'], name=op.f('fk_gds_requests_certificate_id_certificates')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_gds_requests')),
    )
    op.create_index('ix_gds_requests_state', 'gds_requests', ['state'], unique=False)
    op.create_table(
        'gds_enrol_tokens',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('application_id', sa.Integer(), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_by', sa.String(length=200), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['application_id'], ['applications.id'], name=op.f('fk_gds_enrol_tokens_application_id_applications'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_gds_enrol_tokens')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_gds_enrol_tokens_token_hash')),
    )
    op.add_column('applications', sa.Column('unregistered_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('applications') as batch:
        batch.drop_column('unregistered_at')
    op.drop_table('gds_enrol_tokens')
    op.drop_index('ix_gds_requests_state', table_name='gds_requests')
    op.drop_table('gds_requests')
    op.drop_table('gds_users')
