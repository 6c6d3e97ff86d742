"""Initial schema: authorities, applications, certificates, CRLs, audit events.

Revision ID: 0001
Revises: 
Create Date: 2026-11-26 16:31:32.804630
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target', sa.String(length=1024), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_at'), ['at'], unique=False)

    op.create_table('authorities',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('thumbprint', sa.String(length=40), nullable=False),
    sa.Column('certificate_der', sa.LargeBinary(), nullable=False),
    sa.Column('key_path', sa.Text(), nullable=False),
    sa.Column('next_crl_number', sa.Integer(), nullable=False),
    sa.Column('crl_days', sa.Integer(), nullable=False),
    sa.Column('not_after', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_authorities')),
    sa.UniqueConstraint('thumbprint', name=op.f('uq_authorities_thumbprint'))
    )
    op.create_table('applications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('app_uri', sa.String(length=1024), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('organization', sa.String(length=64), nullable=True),
    sa.Column('dns_names', sa.JSON(), nullable=False),
    sa.Column('ip_addresses', sa.JSON(), nullable=False),
    sa.Column('role', sa.Enum('server', 'client', 'both', name='role', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('store_path', sa.Text(), nullable=True),
    sa.Column('layout', sa.String(length=20), nullable=False),
    sa.Column('key_size', sa.Integer(), nullable=False),
    sa.Column('validity_days', sa.Integer(), nullable=False),
    sa.Column('renew_before_seconds', sa.Integer(), nullable=True),
    sa.Column('endpoint', sa.Text(), nullable=True),
    sa.Column('deploy_hook', sa.Text(), nullable=True),
    sa.Column('internal', sa.Boolean(), nullable=False),
    sa.Column('authority_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['authority_id'], ['authorities.id'], name=op.f('fk_applications_authority_id_authorities')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_applications')),
    sa.UniqueConstraint('app_uri', name=op.f('uq_applications_app_uri'))
    )
    op.create_table('crls',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('authority_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('this_update', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_update', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_count', sa.Integer(), nullable=False),
    sa.Column('der', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['authority_id'], ['authorities.id'], name=op.f('fk_crls_authority_id_authorities')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crls')),
    sa.UniqueConstraint('authority_id', 'number', name='uq_crls_authority_number')
    )
    op.create_table('certificates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('application_id', sa.Integer(), nullable=False),
    sa.Column('authority_id', sa.Integer(), nullable=False),
    sa.Column('serial_hex', sa.String(length=42), nullable=False),
    sa.Column('thumbprint', sa.String(length=40), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('not_before', sa.DateTime(timezone=True), nullable=False),
    sa.Column('not_after', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.Enum('pending', 'active', 'superseded', 'revoked', 'failed', name='cert_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=True),
    sa.Column('key_size', sa.Integer(), nullable=False),
    sa.Column('der', sa.LargeBinary(), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revocation_reason', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['application_id'], ['applications.id'], name=op.f('fk_certificates_application_id_applications')),
    sa.ForeignKeyConstraint(['authority_id'], ['authorities.id'], name=op.f('fk_certificates_authority_id_authorities')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_certificates')),
    sa.UniqueConstraint('authority_id', 'serial_hex', name='uq_certificates_authority_serial'),
    sa.UniqueConstraint('thumbprint', name=op.f('uq_certificates_thumbprint'))
    )
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.create_index('ix_certificates_application_status', ['application_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_certificates_not_after'), ['not_after'], unique=False)
        batch_op.create_index('ix_certificates_status_not_after', ['status', 'not_after'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.drop_index('ix_certificates_status_not_after')
        batch_op.drop_index(batch_op.f('ix_certificates_not_after'))
        batch_op.drop_index('ix_certificates_application_status')

    op.drop_table('certificates')
    op.drop_table('crls')
    op.drop_table('applications')
    op.drop_table('authorities')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_at'))

    op.drop_table('audit_events')
