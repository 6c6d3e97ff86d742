"""GDS StartNewKeyPairRequest: a request remembers that the GDS made its key and in which format it hands it over.

Revision ID: 0017_gds_key_pairs
Revises: 0013
Create Date: 2026-12-02 15:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0017_gds_key_pairs"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gds_requests") as batch:
        batch.add_column(sa.Column("new_key_format", sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gds_requests") as batch:
        batch.drop_column("new_key_format")
