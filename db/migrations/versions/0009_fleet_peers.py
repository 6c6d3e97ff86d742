"""Fleet trust: peers (endpoints and stores certmgr does not issue for), canary certificates, last probes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 06:20:00.000000
"""

import sqlalchemy as sa
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'peers',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('endpoint', sa.String(length=1024), nullable=True),
        sa.Column('store_path', sa.Text(), nullable=True),
        sa.Column('layout', sa.String(length=20), nullable=False),
        sa.Column('source', sa.String(length=32), nullable=False),
        sa.Column('thumbprint', sa.String(length=40), nullable=True),
        sa.Column('subject', sa.Text(), nullable=True),
        sa.Column('app_uri', sa.String(length=1024), nullable=True),
        sa.Column('not_after', sa.DateTime(timezone=True), nullable=True),
        sa.Column('key_size', sa.Integer(), nullable=True),
        sa.Column('signature_hash', sa.String(length=32), nullable=True),
        sa.Column('findings', sa.JSON(), nullable=False),
        sa.Column('offered', sa.JSON(), nullable=False),
        sa.Column('flags', sa.JSON(), nullable=False),
        sa.Column('previous_thumbprint', sa.String(length=40), nullable=True),
        sa.Column('changed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_peers')),
        sa.UniqueConstraint('endpoint', name=op.f('uq_peers_endpoint')),
    )
    with op.batch_alter_table('peers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_peers_not_after'), ['not_after'], unique=False)
    op.create_table(
        'probe_results',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('endpoint', sa.String(length=1024), nullable=False),
        sa.Column('trusts_ca', sa.Boolean(), nullable=True),
        sa.Column('crl_effective', sa.Integer(), nullable=True),
        sa.Column('crl_current', sa.Integer(), nullable=True),
        sa.Column('statuses', sa.JSON(), nullable=False),
        sa.Column('fix', sa.Text(), nullable=True),
        sa.Column('probed_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_probe_results')),
        sa.UniqueConstraint('endpoint', name=op.f('uq_probe_results_endpoint')),
    )
    op.create_table(
        'canaries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('authority_id', sa.Integer(), nullable=False),
        sa.Column('crl_number', sa.Integer(), nullable=False),
        sa.Column('certificate_id', sa.Integer(), nullable=False),
        sa.Column('key_file', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['authority_id'], ['authorities.id'], name=op.f('fk_canaries_authority_id_authorities')),
        sa.ForeignKeyConstraint(['certificate_id'], ['certificates.id'], name=op.f('fk_canaries_certificate_id_certificates')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_canaries')),
        sa.UniqueConstraint('authority_id', 'crl_number', name='uq_canaries_authority_number'),
    )


def downgrade() -> None:
    op.drop_table('canaries')
    op.drop_table('probe_results')
    with op.batch_alter_table('peers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_peers_not_after'))
    op.drop_table('peers')
