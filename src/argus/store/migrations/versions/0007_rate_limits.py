"""users: the OpenAI endpoint's rate limits the admin sets per user

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("requests_per_minute", sa.Integer, nullable=True))
        batch.add_column(sa.Column("tokens_per_minute", sa.Integer, nullable=True))


def downgrade() -> None:
    raise NotImplementedError("argus migrates forward only; restore a backup to go back")
