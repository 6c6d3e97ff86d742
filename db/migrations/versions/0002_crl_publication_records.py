"""CRL publication records: which CRL number each store holds, and imported third-party CRLs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 16:46:23.774645
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('external_crls',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('issuer_subject', sa.Text(), nullable=False),
    sa.Column('issuer_thumbprint', sa.String(length=40), nullable=False),
    sa.Column('store_path', sa.Text(), nullable=False),
    sa.Column('crl_number', sa.Integer(), nullable=True),
    sa.Column('this_update', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_update', sa.DateTime(timezone=True), nullable=False),
    sa.Column('imported_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_external_crls')),
    sa.UniqueConstraint('issuer_thumbprint', 'store_path', name='uq_external_crls_issuer_store')
    )
    with op.batch_alter_table('external_crls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_external_crls_next_update'), ['next_update'], unique=False)

    op.create_table('store_crls',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('authority_id', sa.Integer(), nullable=False),
    sa.Column('store_path', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('crl_number', sa.Integer(), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['authority_id'], ['authorities.id'], name=op.f('fk_store_crls_authority_id_authorities')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_store_crls')),
    sa.UniqueConstraint('authority_id', 'store_path', 'kind', name='uq_store_crls_authority_store_kind')
    )


def downgrade() -> None:
    op.drop_table('store_crls')
    with op.batch_alter_table('external_crls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_external_crls_next_update'))

    op.drop_table('external_crls')
