"""Events may have the reason "context": drawn because of the session's device and time of day.

Synthetic worlds made with ``context_effect`` > 0 plant such events (``db/synthetic``); before
this revision the schema refused them, so a context world could not be written to a database
and the app could not serve the context-aware model on one.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OLD_REASONS = "reason IS NULL OR reason IN ('interest', 'trigger', 'popularity', 'noise')"
NEW_REASONS = (
    "reason IS NULL OR reason IN ('interest', 'trigger', 'popularity', 'noise', 'context')"
)


def _events_v2(reasons: str) -> sa.Table:
    """The events table as 0002 left it: SQLite rebuilds a table to alter a CHECK ("batch"),
    and a rebuild from this definition keeps every named constraint and index."""
    meta = sa.MetaData()
    sa.Table("sessions", meta, sa.Column("id", sa.Integer(), primary_key=True))
    sa.Table("items", meta, sa.Column("id", sa.Integer(), primary_key=True))
    return sa.Table(
        "events",
        meta,
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
        sa.Column("rating", sa.Float(), nullable=True),
        sa.CheckConstraint("kind IN ('view', 'cart', 'purchase', 'rating')", name="ck_events_kind"),
        sa.CheckConstraint(reasons, name="ck_events_reason"),
        sa.CheckConstraint(
            "rating IS NULL OR (rating >= 0 AND rating <= 10)", name="ck_events_rating"
        ),
        sa.Index("ix_events_session_ts", "session_id", "ts", "id"),
        sa.Index("ix_events_item", "item_id"),
    )


def _swap(old: str, new: str) -> None:
    with op.batch_alter_table("events", copy_from=_events_v2(old)) as batch:
        batch.drop_constraint("ck_events_reason", type_="check")
        batch.create_check_constraint("ck_events_reason", new)


def upgrade() -> None:
    _swap(OLD_REASONS, NEW_REASONS)


def downgrade() -> None:
    op.execute("UPDATE events SET reason = NULL WHERE reason = 'context'")
    _swap(NEW_REASONS, OLD_REASONS)
