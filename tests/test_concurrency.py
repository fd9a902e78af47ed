"""Concurrent writers lose nothing: threads and processes recording events at the same time.

On SQLite every write transaction starts with BEGIN IMMEDIATE and waits (busy timeout) for the
write lock, so no writer sees "database is locked"; on PostgreSQL each writer has its own
connection and the id sequence hands out distinct ids. Every case checks the exact row count
and that no id was given twice.
"""

from __future__ import annotations

import multiprocessing
import sys
import types
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier

import pytest
from sqlalchemy import Engine, func, select

from db.engine import create_schema, make_engine
from db.repository import Repository
from db.schema import Event
from db.synthetic import WORLD_SIZES, seed_database
from tests.db_backends import db_url, pg_cluster  # noqa: F401

THREADS = 8
PROCESSES = 4
EVENTS_PER_WRITER = 1000
KINDS = ("view", "view", "view", "cart", "purchase")


@dataclass(frozen=True)
class World:
    url: str
    engine: Engine
    sessions: list[int]  # one fresh app session per writer
    items: list[int]

    def event_count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count(Event.id))).scalar_one()

    def event_ids(self) -> list[int]:
        stmt = select(Event.id).where(Event.session_id.in_(self.sessions))
        with self.engine.connect() as conn:
            return list(conn.scalars(stmt))


def seeded(url: str, writers: int) -> Iterator[World]:
    engine = make_engine(url)
    create_schema(engine)
    seed_database(engine, WORLD_SIZES["tiny"])
    repo = Repository(engine)
    [dataset] = repo.datasets()
    users = [u.id for u in repo.list_users(dataset.id, limit=writers)]
    sessions = [repo.start_session(u) for u in users]
    items = [i.id for i in repo.all_items(dataset.id)]
    try:
        yield World(url, engine, sessions, items)
    finally:
        engine.dispose()


@pytest.fixture
def world(db_url: str) -> Iterator[World]:  # noqa: F811
    yield from seeded(db_url, THREADS)


def record_events(repo: Repository, session: int, items: list[int], n: int) -> list[int]:
    """What one click after another does: one short write transaction per event."""
    return [
        repo.add_event(session, items[(session * 7 + i) % len(items)], KINDS[i % len(KINDS)])
        for i in range(n)
    ]


def record_events_in_a_process(url: str, session: int, items: list[int], n: int) -> list[int]:
    """Entry point of a spawned process: its own engine, like another app server."""
    engine = make_engine(url)
    try:
        return record_events(Repository(engine), session, items, n)
    finally:
        engine.dispose()


def wait_for_all(barrier: Barrier) -> None:
    barrier.wait(timeout=120)


def check_nothing_lost(world: World, before: int, ids: list[list[int]], writers: int) -> None:
    expected = writers * EVENTS_PER_WRITER
    returned = [i for chunk in ids for i in chunk]
    assert len(returned) == expected
    assert len(set(returned)) == expected, "an id was handed out twice"
    assert world.event_count() == before + expected
    assert sorted(world.event_ids()) == sorted(returned)


@pytest.mark.parametrize("engines", ["engine per thread", "shared engine"])
def test_threads_recording_at_once_lose_nothing(world: World, engines: str) -> None:
    before = world.event_count()
    shared = Repository(world.engine)
    repos = [
        shared if engines == "shared engine" else Repository(make_engine(world.url))
        for _ in world.sessions
    ]
    try:
        with ThreadPoolExecutor(THREADS) as pool:
            futures = [
                pool.submit(record_events, repo, session, world.items, EVENTS_PER_WRITER)
                for repo, session in zip(repos, world.sessions, strict=True)
            ]
            ids = [f.result() for f in futures]  # re-raises any writer's exception here
    finally:
        for repo in repos:
            if repo is not shared:
                repo.engine.dispose()
    check_nothing_lost(world, before, ids, THREADS)


def test_processes_recording_at_once_lose_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A spawned child first re-runs the parent's __main__ file. After any AppTest in this run
    # that is a Streamlit script (Streamlit installs each script it runs as __main__ and never
    # puts the old one back): app.py would open, even seed, data/app.db in every child. A main
    # module without a file makes the children import only what the task needs.
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    before = world.event_count()
    sessions = world.sessions[:PROCESSES]
    spawn = multiprocessing.get_context("spawn")
    # Every worker waits at the barrier until all have started, so the writes really overlap.
    started = spawn.Barrier(PROCESSES)
    with ProcessPoolExecutor(
        PROCESSES, mp_context=spawn, initializer=wait_for_all, initargs=(started,)
    ) as pool:
        futures = [
            pool.submit(
                record_events_in_a_process, world.url, session, world.items, EVENTS_PER_WRITER
            )
            for session in sessions
        ]
        ids = [f.result() for f in futures]
    check_nothing_lost(
        World(world.url, world.engine, sessions, world.items), before, ids, PROCESSES
    )
