"""Datasets have a state: "ready", or "importing" while an import writes them in short steps.

Imports used to write a whole file in one transaction, holding SQLite's write lock for as long
(ML-1M: ~15 s) so the app's clicks failed with "database is locked". They now write in short
transactions into a dataset marked "importing", which the app does not see, and flip it to
"ready" at the end (db/importers/staging.py). Every existing dataset is ready.

The partial index on events.cause_event_id lets an unfinished import's events be deleted in
chunks: each deleted event looks up the events it caused (ON DELETE SET NULL), which without an
index is a scan of the whole table per row.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

STATES = "state IN ('ready', 'importing')"
CAUSE_INDEX_WHERE = "cause_event_id IS NOT NULL"


def _datasets(*, with_state: bool) -> sa.Table:
    """The datasets table as 0002 made it (or as this revision leaves it): SQLite adds or drops
    a CHECK by rebuilding the table ("batch"), and a rebuild from this definition keeps its
    unique name."""
    columns: list[sa.SchemaItem] = [
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(80), nullable=False, unique=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
    ]
    if with_state:
        columns.append(sa.Column("state", sa.String(12), server_default="ready", nullable=False))
        columns.append(sa.CheckConstraint(STATES, name="ck_datasets_state"))
    return sa.Table("datasets", sa.MetaData(), *columns)


def upgrade() -> None:
    with op.batch_alter_table("datasets", copy_from=_datasets(with_state=False)) as batch:
        batch.add_column(sa.Column("state", sa.String(12), server_default="ready", nullable=False))
        batch.create_check_constraint("ck_datasets_state", STATES)
    op.create_index(
        "ix_events_cause",
        "events",
        ["cause_event_id"],
        sqlite_where=sa.text(CAUSE_INDEX_WHERE),
        postgresql_where=sa.text(CAUSE_INDEX_WHERE),
    )


def downgrade() -> None:
    unfinished = (
        op.get_bind().execute(sa.text("SELECT name FROM datasets WHERE state != 'ready'")).scalars()
    )
    names = list(unfinished)
    if names:
        # Without the column their half-written rows would become visible datasets.
        raise RuntimeError(
            f"Unfinished imports {names} are in the database: remove them first "
            "(db.importers.clean_abandoned_imports, or finish them) before going back to 0003"
        )
    op.drop_index("ix_events_cause", table_name="events")
    with op.batch_alter_table("datasets", copy_from=_datasets(with_state=True)) as batch:
        batch.drop_constraint("ck_datasets_state", type_="check")
        batch.drop_column("state")
