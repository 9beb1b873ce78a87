"""usage: what each user, key and model used of the OpenAI endpoint, per minute

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_minutes",
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=False),
        sa.Column("model_id", sa.String(160), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("latency_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("minute", "user_id", "key_id", "model_id", "status"),
    )
    op.create_index("ix_usage_minutes_user_minute", "usage_minutes", ["user_id", "minute"])
    op.create_table(
        "usage_batches",
        sa.Column("batch_id", sa.String(64), primary_key=True),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("argus migrates forward only; restore a backup to go back")
