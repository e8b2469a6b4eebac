"""Schedules (POST /v1/schedules) and each occurrence they fired, with the job it made.

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
        "schedules",
        sa.Column("schedule_id", sa.String(64), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("template", sa.JSON, nullable=False),
        sa.Column("cron", sa.String(128), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("next_fire_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fired", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_schedules_due", "schedules", ["state", "next_fire_at"])
    op.create_index("ix_schedules_tenant_created", "schedules", ["tenant", "created_at"])
    op.create_table(
        "schedule_occurrences",
        sa.Column("schedule_id", sa.String(64), primary_key=True),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("job_id", sa.String(64), nullable=False, unique=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("due_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_schedule_occurrences_unpublished", "schedule_occurrences", ["published_at"])


def downgrade() -> None:
    op.drop_table("schedule_occurrences")
    op.drop_index("ix_schedules_tenant_created", "schedules")
    op.drop_index("ix_schedules_due", "schedules")
    op.drop_table("schedules")
