"""tasks and task_events (append-only)

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_REFUSE = "task_events is append-only: events are never updated or deleted"


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("task_id", sa.String(40), primary_key=True),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("users.user_id"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("workload", sa.String(16), nullable=False),
        sa.Column("spec_yaml", sa.Text, nullable=False),
        sa.Column("resolved_spec", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error_summary", sa.Text, nullable=True),
        sa.Column("ray_job_id", sa.String(64), nullable=False, unique=True),
        sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_tasks_state", "tasks", ["state"])
    op.create_index("ix_tasks_user_created", "tasks", ["user_id", "created_at"])
    op.create_table(
        "task_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(40), sa.ForeignKey("tasks.task_id"), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
    )
    op.create_index("ix_task_events_task_id", "task_events", ["task_id"])
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER task_events_no_{verb.lower()} BEFORE {verb} ON task_events "
                f"BEGIN SELECT RAISE(ABORT, '{_REFUSE}'); END"
            )
    elif dialect == "postgresql":
        # argus_refuse_event_change() comes with 0002.
        op.execute(
            "CREATE TRIGGER task_events_append_only BEFORE UPDATE OR DELETE ON task_events "
            "FOR EACH ROW EXECUTE FUNCTION argus_refuse_event_change()"
        )


def downgrade() -> None:
    raise NotImplementedError("argus migrates forward only; restore a backup to go back")
