"""Datasets, MovieLens-ready columns, impressions and model runs.

Existing users and items (a database from the walking skeleton) move into a dataset named
"synthetic", which also takes over the world facts that were kept in app_meta.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

WORLD_META_KEYS = ("world_seed", "world_size", "world_config", "trigger_pairs")


# The 0001 tables as they were: SQLite rebuilds a table to alter it ("batch"), and a rebuild
# from these definitions keeps every named CHECK constraint and index.
def _users_v1() -> sa.Table:
    return sa.Table(
        "users",
        sa.MetaData(),
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("persona", sa.JSON(), nullable=False),
        sa.Column("is_synthetic", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
    )


def _items_v1() -> sa.Table:
    return sa.Table(
        "items",
        sa.MetaData(),
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("category", sa.String(60), nullable=False),
        sa.Column("brand", sa.String(60), nullable=False),
        sa.Column("tags", sa.String(400), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("price >= 0", name="ck_items_price_nonneg"),
        sa.Index("ix_items_category", "category"),
    )


def _events_v1() -> sa.Table:
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
        sa.CheckConstraint("kind IN ('view', 'cart', 'purchase')", name="ck_events_kind"),
        sa.CheckConstraint(
            "reason IS NULL OR reason IN ('interest', 'trigger', 'popularity', 'noise')",
            name="ck_events_reason",
        ),
        sa.Index("ix_events_session_ts", "session_id", "ts", "id"),
        sa.Index("ix_events_item", "item_id"),
    )


def _with_dataset_columns(table: sa.Table) -> sa.Table:
    """The v1 table plus the columns the first step adds (for the second rebuild)."""
    copy = table.to_metadata(sa.MetaData())
    copy.append_column(sa.Column("dataset_id", sa.Integer(), nullable=True))
    copy.append_column(sa.Column("external_id", sa.String(64), nullable=True))
    return copy


def _move_existing_rows_into_a_dataset(conn: sa.Connection) -> int | None:
    has_rows = any(
        conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
        for table in ("users", "items")
    )
    if not has_rows:
        return None
    facts = dict(
        conn.execute(
            sa.text("SELECT key, value FROM app_meta WHERE key IN :keys").bindparams(
                sa.bindparam("keys", expanding=True)
            ),
            {"keys": list(WORLD_META_KEYS)},
        ).all()
    )
    meta = {
        key: json.loads(value) if key in ("world_config", "trigger_pairs") else value
        for key, value in facts.items()
    }
    conn.execute(
        sa.text(
            "INSERT INTO datasets (id, name, kind, source, meta, created_at) "
            "VALUES (1, 'synthetic', 'synthetic', :source, :meta, :now)"
        ),
        {
            "source": "rows from before datasets existed (migration 0002)",
            "meta": json.dumps(meta),
            "now": datetime.now(UTC).replace(tzinfo=None),
        },
    )
    conn.execute(
        sa.text("DELETE FROM app_meta WHERE key IN :keys").bindparams(
            sa.bindparam("keys", expanding=True)
        ),
        {"keys": list(WORLD_META_KEYS)},
    )
    return 1


def _advance_id_sequences(conn: sa.Connection) -> None:
    """On PostgreSQL, move every id sequence past the rows already there.

    The dataset row above has an explicit id, and so may the rows of a 0001 database (bulk
    writes): neither advances a SERIAL sequence, so the app's next insert would reuse an id and
    fail on the primary key. SQLite needs nothing (a new id is max(id) + 1).
    """
    if conn.dialect.name != "postgresql":
        return
    for table in ("datasets", "users", "items", "sessions", "events"):
        conn.execute(
            sa.text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
            )
        )


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(80), nullable=False, unique=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
    )
    conn = op.get_bind()
    dataset_id = _move_existing_rows_into_a_dataset(conn)

    # Step 1: new columns, nullable, so existing rows can be filled in.
    with op.batch_alter_table("users", copy_from=_users_v1()) as batch:
        batch.add_column(sa.Column("dataset_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("external_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("preferences", sa.JSON(), nullable=True))
    with op.batch_alter_table("items", copy_from=_items_v1()) as batch:
        batch.add_column(sa.Column("dataset_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("external_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("year", sa.Integer(), nullable=True))
    if dataset_id is not None:
        conn.execute(sa.text("UPDATE users SET dataset_id = :d"), {"d": dataset_id})
        conn.execute(sa.text("UPDATE items SET dataset_id = :d"), {"d": dataset_id})
    conn.execute(sa.text("UPDATE users SET preferences = '{}'"))

    # Step 2: constraints, now that every row has its dataset.
    users = _with_dataset_columns(_users_v1())
    users.append_column(sa.Column("preferences", sa.JSON(), nullable=True))
    with op.batch_alter_table("users", copy_from=users) as batch:
        batch.alter_column("dataset_id", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("preferences", existing_type=sa.JSON(), nullable=False)
        batch.create_foreign_key(
            "fk_users_dataset_id", "datasets", ["dataset_id"], ["id"], ondelete="CASCADE"
        )
        batch.create_unique_constraint("uq_users_dataset_external", ["dataset_id", "external_id"])
        batch.create_index("ix_users_dataset", ["dataset_id", "id"])

    items = _with_dataset_columns(_items_v1())
    items.append_column(sa.Column("year", sa.Integer(), nullable=True))
    with op.batch_alter_table("items", copy_from=items) as batch:
        batch.alter_column("dataset_id", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("title", existing_type=sa.String(200), type_=sa.String(300))
        batch.alter_column("price", existing_type=sa.Float(), nullable=True)
        batch.drop_constraint("ck_items_price_nonneg", type_="check")
        batch.create_check_constraint("ck_items_price_nonneg", "price IS NULL OR price >= 0")
        batch.create_foreign_key(
            "fk_items_dataset_id", "datasets", ["dataset_id"], ["id"], ondelete="CASCADE"
        )
        batch.create_unique_constraint("uq_items_dataset_external", ["dataset_id", "external_id"])
        batch.drop_index("ix_items_category")
        batch.create_index("ix_items_dataset_category", ["dataset_id", "category"])

    with op.batch_alter_table("events", copy_from=_events_v1()) as batch:
        batch.add_column(sa.Column("rating", sa.Float(), nullable=True))
        batch.drop_constraint("ck_events_kind", type_="check")
        batch.create_check_constraint(
            "ck_events_kind", "kind IN ('view', 'cart', 'purchase', 'rating')"
        )
        batch.create_check_constraint(
            "ck_events_rating", "rating IS NULL OR (rating >= 0 AND rating <= 10)"
        )

    op.create_table(
        "impressions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "session_id",
            sa.Integer(),
            sa.ForeignKey("sessions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "item_id", sa.Integer(), sa.ForeignKey("items.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("model", sa.String(60), nullable=False),
        sa.Column("source", sa.String(12), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("explanation", sa.JSON(), nullable=False),
        sa.Column("shown_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "source IN ('attention', 'content', 'popularity', 'blend')",
            name="ck_impressions_source",
        ),
        sa.CheckConstraint("rank >= 1", name="ck_impressions_rank"),
    )
    op.create_index("ix_impressions_session_shown", "impressions", ["session_id", "shown_at"])
    op.create_table(
        "model_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "dataset_id",
            sa.Integer(),
            sa.ForeignKey("datasets.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("model_kind", sa.String(40), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("data_fingerprint", sa.String(64), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("checkpoint_path", sa.Text(), nullable=False),
        sa.Column("timings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_model_runs_dataset_created", "model_runs", ["dataset_id", "created_at"])
    _advance_id_sequences(conn)


def downgrade() -> None:
    raise NotImplementedError("0002 is one-way: restore a backup to go back to 0001")
