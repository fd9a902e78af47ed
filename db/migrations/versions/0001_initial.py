"""Initial schema: app_meta, users, items, sessions, events (the walking skeleton's tables).

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_meta",
        sa.Column("key", sa.String(60), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("persona", sa.JSON(), nullable=False),
        sa.Column("is_synthetic", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "items",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("category", sa.String(60), nullable=False),
        sa.Column("brand", sa.String(60), nullable=False),
        sa.Column("tags", sa.String(400), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("price >= 0", name="ck_items_price_nonneg"),
    )
    op.create_index("ix_items_category", "items", ["category"])
    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("device", sa.String(20), nullable=False),
        sa.Column("time_of_day", sa.String(20), nullable=False),
    )
    op.create_index("ix_sessions_user_started", "sessions", ["user_id", "started_at"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "session_id",
            sa.Integer(),
            sa.ForeignKey("sessions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("items.id"), nullable=False),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("ts", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.String(12), nullable=True),
        sa.Column(
            "cause_event_id",
            sa.Integer(),
            sa.ForeignKey("events.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.CheckConstraint("kind IN ('view', 'cart', 'purchase')", name="ck_events_kind"),
        sa.CheckConstraint(
            "reason IS NULL OR reason IN ('interest', 'trigger', 'popularity', 'noise')",
            name="ck_events_reason",
        ),
    )
    op.create_index("ix_events_session_ts", "events", ["session_id", "ts", "id"])
    op.create_index("ix_events_item", "events", ["item_id"])


def downgrade() -> None:
    for table in ("events", "sessions", "items", "users", "app_meta"):
        op.drop_table(table)
