"""users: the command permission and quotas; serve_models and tasks: the GPUs they hold

Revision ID: 0004
Revises: 0003

serve_models.target_replicas goes: the replica count lives in the resolved spec only.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "users",
        sa.Column("allow_commands", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    for name in ("max_gpus", "max_models", "max_replicas"):
        op.add_column("users", sa.Column(name, sa.Integer, nullable=True))
    for table in ("serve_models", "tasks"):
        op.add_column(table, sa.Column("gpus", sa.Integer, nullable=False, server_default="0"))
    bind = op.get_bind()
    models = sa.table(
        "serve_models",
        sa.column("model_key", sa.String),
        sa.column("resolved_spec", sa.JSON),
        sa.column("gpus", sa.Integer),
    )
    for key, spec in bind.execute(sa.select(models.c.model_key, models.c.resolved_spec)).all():
        gpus = int(spec.get("num_replicas", 1)) * int(spec.get("gpus_per_replica", 1))
        bind.execute(models.update().where(models.c.model_key == key).values(gpus=gpus))
    tasks = sa.table(
        "tasks",
        sa.column("task_id", sa.String),
        sa.column("resolved_spec", sa.JSON),
        sa.column("gpus", sa.Integer),
    )
    for task_id, spec in bind.execute(sa.select(tasks.c.task_id, tasks.c.resolved_spec)).all():
        gpus = int(spec.get("gpus_per_node", 0)) * int(spec.get("nnodes", 1))
        bind.execute(tasks.update().where(tasks.c.task_id == task_id).values(gpus=gpus))
    # SQLite 3.35+ drops a plain column in place (no table rebuild, so the events'
    # foreign keys and the partial unique index stay as they are).
    op.execute("ALTER TABLE serve_models DROP COLUMN target_replicas")


def downgrade() -> None:
    raise NotImplementedError("argus migrates forward only; restore a backup to go back")
