"""serve_models and serve_events (append-only)

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_REFUSE = "serve_events is append-only: events are never updated or deleted"


def upgrade() -> None:
    op.create_table(
        "serve_models",
        sa.Column("model_key", sa.String(40), primary_key=True),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("users.user_id"), nullable=False),
        sa.Column("model_id_suffix", sa.String(64), nullable=False),
        sa.Column("model_id_prefix", sa.String(64), nullable=False),
        sa.Column("model_id", sa.String(160), nullable=False),
        sa.Column("spec_yaml", sa.Text, nullable=False),
        sa.Column("resolved_spec", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error_summary", sa.Text, nullable=True),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("observed_generation", sa.Integer, nullable=False),
        sa.Column("target_replicas", sa.Integer, nullable=False),
        sa.Column("ready_replicas", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_serve_models_model_id", "serve_models", ["model_id"])
    op.create_index("ix_serve_models_state", "serve_models", ["state"])
    op.create_index("ix_serve_models_updated_at", "serve_models", ["updated_at"])
    op.create_index("ix_serve_models_user_updated", "serve_models", ["user_id", "updated_at"])
    op.create_index(
        "uq_serve_models_live_suffix",
        "serve_models",
        ["user_id", "model_id_suffix"],
        unique=True,
        sqlite_where=sa.text("state != 'DELETED'"),
        postgresql_where=sa.text("state != 'DELETED'"),
    )
    op.create_table(
        "serve_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "model_key", sa.String(40), sa.ForeignKey("serve_models.model_key"), nullable=False
        ),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
    )
    op.create_index("ix_serve_events_model_key", "serve_events", ["model_key"])
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER serve_events_no_{verb.lower()} BEFORE {verb} ON serve_events "
                f"BEGIN SELECT RAISE(ABORT, '{_REFUSE}'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION argus_refuse_event_change() RETURNS trigger AS $$ "
            f"BEGIN RAISE EXCEPTION '{_REFUSE}'; END $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER serve_events_append_only BEFORE UPDATE OR DELETE ON serve_events "
            "FOR EACH ROW EXECUTE FUNCTION argus_refuse_event_change()"
        )


def downgrade() -> None:
    raise NotImplementedError("argus migrates forward only; restore a backup to go back")
