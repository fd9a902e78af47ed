"""Database benchmark: a world of ≥ 1M events on SQLite and PostgreSQL.

    python -m bench.db [--events 1000000] [--url URL] [--no-write]

Protocol: one synthetic world is generated (``WORLD_SIZES["large"]`` when it exists and no other
``--events`` is asked for, else the default world with ~40 events per user scaled to
``--events``) and written with the app's own bulk writer (``db.synthetic.write_world``) into

* SQLite: a temp file opened by ``db.engine.make_engine`` (WAL, synchronous=NORMAL, foreign keys,
  busy timeout: the app's settings); no ANALYZE, as the app never runs one;
* PostgreSQL: a throw-away cluster started from Debian's server binaries with the server's
  default settings (fsync on, synchronous_commit on), ``ANALYZE`` after the load (autovacuum
  would do it shortly after a real bulk load);

or only into ``--url`` (an empty database, or one without a dataset named "bench"). Then, in
this order, on each backend:

1. the history query the recommender runs on every click, ``Repository.user_history(user,
   limit=50)`` for random users (N=2,000 after 50 warm-up calls), and its query plan
   (``EXPLAIN QUERY PLAN`` / ``EXPLAIN ANALYZE``), plus one ``user_sequences`` (the training read)
   with its plan;
2. single-event inserts through ``Repository.add_event`` into one new session (N=2,000: one
   transaction each, as clicks are recorded);
3. batched inserts: ``insert(Event)`` executemany in 1,000-row batches, one transaction per batch,
   over random sessions and items of the world (100 batches by default).

Results go to the ``db`` section of docs/benchmarks.md and are printed.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, event, func, insert, select, text

from bench.report import machine, percentiles, today, write_section
from db.engine import create_schema, make_engine, writer
from db.repository import Repository
from db.schema import Event, Session, User
from db.synthetic import WORLD_SIZES, World, WorldConfig, generate_world, write_world
from tests.db_backends import TempCluster, find_pg_bindir, psycopg_url

DATASET = "bench"
EVENTS_PER_USER = 40  # the default world has ~41 events per user
WARMUP = 50
HISTORY_LIMIT = 50


def world_config(target_events: int, explicit: bool) -> tuple[WorldConfig, str]:
    if "large" in WORLD_SIZES and not explicit:
        return WORLD_SIZES["large"], 'WORLD_SIZES["large"]'
    n_users = math.ceil(target_events / EVENTS_PER_USER)
    n_items = max(WORLD_SIZES["default"].n_items, int(n_users * 0.8))
    config = replace(WORLD_SIZES["default"], n_users=n_users, n_items=n_items)
    return config, f'WORLD_SIZES["default"] with n_users={n_users}, n_items={n_items}'


@dataclass
class Result:
    backend: str
    location: str
    setup: str = ""
    write_s: float = 0.0
    analyze_s: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    history: dict[str, float] = field(default_factory=dict)
    history_rows: float = 0.0
    sequences_s: float = 0.0
    single_per_s: float = 0.0
    single: dict[str, float] = field(default_factory=dict)
    single_async_per_s: float | None = None
    batched_per_s: float = 0.0
    batched_rows: int = 0
    plans: dict[str, str] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


@contextmanager
def captured_sql(engine: Engine) -> Iterator[list[tuple[str, object]]]:
    """The statements (and parameters) the code under the block sends to the database."""
    seen: list[tuple[str, object]] = []

    def listener(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listener)


def query_plan(engine: Engine, statement: str, parameters: object) -> str:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
            # (id, parent, notused, detail): indent by depth like the sqlite3 shell does.
            depth: dict[int, int] = {0: -1}
            lines = []
            for node, parent, _, detail in rows:
                depth[node] = depth.get(parent, -1) + 1
                lines.append("  " * depth[node] + detail)
            return "\n".join(lines)
        rows = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters).all()
        return "\n".join(r[0] for r in rows)


def plan_findings(backend: str, name: str, plan: str) -> list[str]:
    """Full scans of the big tables where an index lookup was expected."""
    findings = []
    for table in ("events", "sessions"):
        if backend == "sqlite":
            full = any(
                line.strip().startswith(f"SCAN {table}") and "INDEX" not in line
                for line in plan.splitlines()
            )
        else:
            full = f"Seq Scan on {table}" in plan
        if full:
            findings.append(f"`{name}` reads the whole `{table}` table")
    return findings


def dataset_facts(engine: Engine, dataset_id: int) -> tuple[list[int], list[int], list[int]]:
    """User, session and item ids of the dataset."""
    with engine.connect() as conn:
        users = list(conn.scalars(select(User.id).where(User.dataset_id == dataset_id)))
        sessions = list(
            conn.scalars(
                select(Session.id)
                .join(User, User.id == Session.user_id)
                .where(User.dataset_id == dataset_id)
            )
        )
    items = [i.id for i in Repository(engine).all_items(dataset_id)]
    return users, sessions, items


def run_backend(backend: str, url: str, world: World, args: argparse.Namespace) -> Result:
    if backend == "postgresql":
        url = psycopg_url(url).render_as_string(hide_password=False)
    engine = make_engine(url)
    result = Result(backend, engine.url.render_as_string(hide_password=True))
    if backend == "sqlite":
        result.setup = "the app's settings (WAL, synchronous=NORMAL, foreign keys), no ANALYZE"
    else:
        result.setup = "`ANALYZE` after the load"
    rng = random.Random(7)
    try:
        create_schema(engine)
        print(f"[{backend}] writing {len(world.events):,} events ...", flush=True)
        result.write_s = timed(lambda: write_world(engine, world, DATASET))
        if backend == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                result.analyze_s = timed(lambda: conn.exec_driver_sql("ANALYZE"))
        repo = Repository(engine)
        dataset = repo.dataset_by_name(DATASET)
        result.counts = repo.counts(dataset.id)
        users, sessions, items = dataset_facts(engine, dataset.id)

        # 1. The history read of every click, and the training read, with their plans.
        print(f"[{backend}] history query x{args.queries} ...", flush=True)
        samples, rows = [], 0
        for i in range(args.queries + WARMUP):
            user = rng.choice(users)
            started = time.perf_counter()
            history = repo.user_history(user, limit=HISTORY_LIMIT)
            elapsed = (time.perf_counter() - started) * 1000
            if i >= WARMUP:
                samples.append(elapsed)
                rows += len(history)
        result.history = percentiles(samples)
        result.history_rows = rows / args.queries
        heavy = max(users[:2000], key=repo.count_user_events)
        with captured_sql(engine) as seen:
            repo.user_history(heavy, limit=HISTORY_LIMIT)
        result.plans["user_history"] = query_plan(engine, *seen[-1])
        with captured_sql(engine) as seen:
            result.sequences_s = timed(lambda: repo.user_sequences(dataset.id))
        result.plans["user_sequences"] = query_plan(engine, *seen[-1])
        for name, plan in result.plans.items():
            if name == "user_history":
                result.findings += plan_findings(backend, name, plan)

        # 2. Single-event inserts, one transaction each (as the app records clicks).
        print(f"[{backend}] single inserts x{args.inserts} ...", flush=True)
        session = repo.start_session(rng.choice(users))
        kinds = ("view", "view", "view", "cart", "purchase")
        samples = []
        started_all = time.perf_counter()
        for i in range(args.inserts):
            started = time.perf_counter()
            repo.add_event(session, rng.choice(items), kinds[i % len(kinds)])
            samples.append((time.perf_counter() - started) * 1000)
        result.single_per_s = args.inserts / (time.perf_counter() - started_all)
        result.single = percentiles(samples)
        if backend == "postgresql":
            # The same with the durability SQLite's WAL + synchronous=NORMAL gives: a crash may
            # lose the last commits, never corrupt (the server's commits do not wait for fsync).
            relaxed = make_engine(url)
            event.listen(
                relaxed,
                "connect",
                lambda dbapi, _rec: dbapi.execute("SET synchronous_commit = off"),
            )
            relaxed_repo = Repository(relaxed)
            took = timed(
                lambda: [
                    relaxed_repo.add_event(session, rng.choice(items), "view")
                    for _ in range(args.inserts)
                ]
            )
            result.single_async_per_s = args.inserts / took
            relaxed.dispose()

        # 3. Batched inserts: executemany, 1,000 rows a batch, one transaction a batch.
        print(f"[{backend}] batched inserts {args.batches} x {args.batch_rows} ...", flush=True)
        start_ts = datetime(2026, 6, 1)
        batches = [
            [
                {
                    "session_id": rng.choice(sessions),
                    "item_id": rng.choice(items),
                    "kind": "view",
                    "ts": start_ts + timedelta(seconds=b * args.batch_rows + r),
                }
                for r in range(args.batch_rows)
            ]
            for b in range(args.batches)
        ]
        write = writer(engine)

        def insert_all() -> None:
            for batch in batches:
                with write.begin() as conn:
                    conn.execute(insert(Event), batch)

        took = timed(insert_all)
        result.batched_rows = args.batches * args.batch_rows
        result.batched_per_s = result.batched_rows / took
        with engine.connect() as conn:
            total = conn.execute(select(func.count(Event.id))).scalar_one()
        expected = result.counts["events"] + args.inserts * (2 if backend == "postgresql" else 1)
        assert total == expected + result.batched_rows, (total, expected)
    finally:
        engine.dispose()
    return result


def postgres_version(url: str) -> str:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar())
    finally:
        engine.dispose()


def fmt_ms(p: dict[str, float]) -> str:
    return f"{p['p50']:.2f} | {p['p95']:.2f} | {p['p99']:.2f}"


def render(
    results: list[Result], config_note: str, gen_s: float, world: World, notes: list[str]
) -> str:
    events = len(world.events)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        "## Database: SQLite and PostgreSQL with ≥ 1M events (`bench/db.py`)",
        "",
        f"Run {today()} on {machine()}; load average at the end {load} (1 / 5 / 15 min). "
        f"World: {config_note}, seed {world.config.seed} "
        f"({len(world.users):,} users, {len(world.items):,} items, {len(world.sessions):,} "
        f"sessions, {events:,} events), generated in {gen_s:.1f} s (`generate_world`, no "
        "database), then written by `write_world` (executemany, 5,000-row batches, one "
        "transaction) into each backend.",
        "",
        "Backends: "
        + "; ".join(f"**{r.backend}** `{r.location}`: {r.setup}" for r in results)
        + ".",
        "",
        "| | " + " | ".join(r.backend for r in results) + " |",
        "|---|" + "---|" * len(results),
        "| write the world (s) | " + " | ".join(f"{r.write_s:.1f}" for r in results) + " |",
        "| events in the database | "
        + " | ".join(f"{r.counts['events']:,}" for r in results)
        + " |",
        "| `user_history(user, limit=50)` p50 / p95 / p99 ms | "
        + " | ".join(fmt_ms(r.history).replace(" | ", " / ") for r in results)
        + " |",
        "| rows per history call (mean) | "
        + " | ".join(f"{r.history_rows:.1f}" for r in results)
        + " |",
        "| `user_sequences(dataset)`, all events (s) | "
        + " | ".join(f"{r.sequences_s:.1f}" for r in results)
        + " |",
        "| single-event inserts (`add_event`), events/s | "
        + " | ".join(f"{r.single_per_s:,.0f}" for r in results)
        + " |",
        "| `add_event` p50 / p95 / p99 ms | "
        + " | ".join(fmt_ms(r.single).replace(" | ", " / ") for r in results)
        + " |",
        "| batched inserts (1,000-row executemany), rows/s | "
        + " | ".join(f"{r.batched_per_s:,.0f}" for r in results)
        + " |",
    ]
    n_history = int(results[0].history["n"]) if results else 0
    n_single = int(results[0].single["n"]) if results else 0
    lines += [
        "",
        f"History: {n_history:,} calls for random users after {WARMUP} warm-up calls (the "
        f"whole repository call: ORM session, query, rows to objects). Single inserts: "
        f"{n_single:,} `add_event` calls into one new session, one transaction each. Batched: "
        f"{results[0].batched_rows:,} rows in 1,000-row batches over random sessions and items."
        if results
        else "",
    ]
    for r in results:
        if r.single_async_per_s is not None:
            lines += [
                "",
                f"PostgreSQL single inserts with `synchronous_commit = off` (commits do not wait "
                f"for the WAL fsync, the durability SQLite's WAL + synchronous=NORMAL gives): "
                f"{r.single_async_per_s:,.0f} events/s.",
            ]
        if r.analyze_s is not None:
            lines += ["", f"PostgreSQL `ANALYZE` after the load took {r.analyze_s:.1f} s."]
    for r in results:
        if r.backend == "sqlite":
            goal = "met" if r.history["p50"] <= 2.0 else "**missed**"
            lines += ["", f"Goal p50 ≤ 2 ms for the history query on SQLite: {goal}."]
    lines += ["", "### Query plans", ""]
    for r in results:
        for name, plan in r.plans.items():
            how = "EXPLAIN QUERY PLAN" if r.backend == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS)"
            lines += [f"{r.backend}, `{name}` ({how}):", "", "```", plan, "```", ""]
    findings = [f"{r.backend}: {f}" for r in results for f in r.findings]
    used = sorted(
        {ix for r in results for ix in re.findall(r"\bix_\w+", r.plans.get("user_history", ""))}
    )
    if findings:
        verdict = "; ".join(findings) + ": an index is missing for it."
    else:
        verdict = (
            "the history query finds the user's sessions and their events by index ("
            + ", ".join(f"`{ix}`" for ix in used)
            + ") on every backend: no index is missing. Only the user's own rows are then "
            "sorted (ORDER BY ts over several sessions). `user_sequences` reads every event of "
            "the dataset, so scanning and sorting them all is expected there."
        )
    lines += ["Indexes: " + verdict]
    lines += [f"\n{note}" for note in notes]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=None, help="events to generate (≈)")
    parser.add_argument("--url", help="benchmark only this database (SQLAlchemy URL)")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--inserts", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch-rows", type=int, default=1000)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    config, config_note = world_config(args.events or 1_000_000, args.events is not None)
    print(f"Generating the world ({config_note}) ...", flush=True)
    started = time.perf_counter()
    world = generate_world(config)
    gen_s = time.perf_counter() - started
    print(f"  {len(world.events):,} events in {gen_s:.1f} s", flush=True)

    results: list[Result] = []
    notes: list[str] = []
    if args.url:
        backend = "sqlite" if args.url.startswith("sqlite") else "postgresql"
        results.append(run_backend(backend, args.url, world, args))
    else:
        with tempfile.TemporaryDirectory(prefix="bench-db-") as tmp:
            results.append(
                run_backend("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", world, args)
            )
        bindir = find_pg_bindir()
        if bindir is None:
            notes.append("PostgreSQL: not run (no server binaries; `apt-get install postgresql`).")
        else:
            cluster = TempCluster(bindir).start()
            try:
                version = postgres_version(cluster.url())
                result = run_backend("postgresql", cluster.url(), world, args)
                result.location += f" (PostgreSQL {version})"
                result.setup = (
                    "a throw-away cluster on this machine with the server's default settings "
                    "(fsync on, synchronous_commit on, shared_buffers 128MB), client over TCP on "
                    "127.0.0.1, " + result.setup
                )
                results.append(result)
            finally:
                cluster.stop()

    body = render(results, config_note, gen_s, world, notes)
    print(body)
    if not args.no_write:
        write_section("db", body)


if __name__ == "__main__":
    main()
