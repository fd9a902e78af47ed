"""Shared fixtures: a tiny synthetic world in a temp SQLite file, with a trained model.

The world and the model are made once per test run; each test that writes gets its own copy of
the database file, so tests never see each other's clicks.
"""

from __future__ import annotations

import gc
import shutil
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import streamlit as st
import torch

from db.engine import create_schema
from db.synthetic import WORLD_SIZES, seed_database
from recengine.blend import BUCKET_NAMES, BlendConfig, save_blend_config
from recengine.recommendations import HistoryItem
from recengine.service import DEFAULT_MODEL_CONFIG, RecService
from recengine.settings import Settings
from recengine.training import TrainConfig

# The tiny catalog with more users, so held-out metrics rest on a few hundred cases.
TEST_WORLD = replace(WORLD_SIZES["tiny"], n_users=200, seed=7)
# The time cap is a safety net only: hitting it on a busy machine would change the model.
TINY_TRAIN = TrainConfig(max_epochs=60, eval_every=5, patience=4, time_budget_s=600, seed=7)
# The app's default model, smaller, so the whole suite trains it in seconds.
TINY_MODEL = {**DEFAULT_MODEL_CONFIG, "d_model": 32, "max_len": 30}


# κ of the blend in tests: w(n) = n / (n + 2), so the model has a share from the first event.
TEST_KAPPA = 2.0


def use_fixed_kappa(service: RecService, kappa: float, model: str = "sasrec") -> None:
    """Replace the tuned blend of a model's checkpoint by one κ for every history length."""
    card = service.shelf.get(model).loaded.card
    config = BlendConfig(
        {name: kappa for name in BUCKET_NAMES}, data_fingerprint=card.data_fingerprint
    )
    save_blend_config(service.checkpoint_dir(model), config)
    service.load_model(model)


def tiny_settings(state_dir: Path, **changes: object) -> Settings:
    return Settings(state_dir=state_dir, world_size="tiny", seed=7, device="cpu").with_(**changes)


def count_events(state_dir: Path) -> int:
    """Events of the test dataset, read through a fresh service (as another process would)."""
    service = RecService(tiny_settings(state_dir))
    try:
        return service.counts()["events"]
    finally:
        service.engine.dispose()


def latest_event(state_dir: Path, user_id: int) -> HistoryItem:
    """The user's most recent event, read through a fresh service."""
    service = RecService(tiny_settings(state_dir))
    try:
        return service.history(user_id)[-1]
    finally:
        service.engine.dispose()


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models: one thread beats two that compete with other work on a 2-core machine
    (two spinning OpenMP threads on a busy box made single tests 100× slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def restore_main_module() -> Iterator[None]:
    """AppTest makes the script it runs the process's ``__main__`` and never puts it back; a
    later spawned child process would then re-run the app on start-up."""
    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main


@pytest.fixture(scope="session")
def trained_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state folder (app.db + models/) with the tiny world and a trained model."""
    state_dir = tmp_path_factory.mktemp("tiny-state")
    service = RecService(tiny_settings(state_dir))
    create_schema(service.engine)
    seed_database(service.engine, TEST_WORLD)
    service.train_model(train_config=TINY_TRAIN, model_config=TINY_MODEL)
    assert service.model_status().ready
    # Training tuned κ per history length (tests/test_service.py checks that file). On the tiny
    # world content often wins, so κ can be ∞ (content only); the other tests get a fixed κ and
    # a predictable hand-over instead.
    tuned = service.checkpoint_path / "blend.json"
    shutil.copy(tuned, state_dir / "tuned_blend.json")
    use_fixed_kappa(service, TEST_KAPPA)
    service.engine.dispose()  # closes connections, so the WAL is folded into app.db
    return state_dir


# The other sequence models of the zoo, tiny, for the pages that switch models.
ZOO_MODELS = ("sasrec_readout", "tisasrec", "context_sasrec", "din", "gru4rec")
ZOO_TRAIN = TrainConfig(max_epochs=6, eval_every=3, patience=4, time_budget_s=600, seed=7)
# DIN with the zoo's own settings (Adam, small batches), long enough for its activation unit to
# tell candidates apart (its target attention rows then differ visibly).
ZOO_DIN_TRAIN = TrainConfig(
    max_epochs=20, batch_size=32, lr=3e-3, weight_decay=0.0, optimizer="adam", eval_every=5,
    patience=4, time_budget_s=600, seed=7,
)  # fmt: skip
ZOO_MODEL_CONFIGS: dict[str, dict[str, object]] = {
    "sasrec_readout": TINY_MODEL,
    "tisasrec": TINY_MODEL,
    "context_sasrec": TINY_MODEL,
    "din": {"d_model": 16, "max_len": 30, "attention_hidden": [16, 8], "mlp_hidden": [16],
            "n_negatives": 20},
    "gru4rec": {"embedding_dim": 32, "hidden_size": 32, "max_len": 30},
}  # fmt: skip


@pytest.fixture(scope="session")
def zoo_state(trained_state: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained state with every sequence model of the zoo trained too (tiny, few epochs),
    each with the fixed test κ."""
    state_dir = tmp_path_factory.mktemp("zoo-state")
    shutil.copytree(trained_state, state_dir, dirs_exist_ok=True, symlinks=True)
    service = RecService(tiny_settings(state_dir))
    service.ensure_database()
    for name in ZOO_MODELS:
        train = ZOO_DIN_TRAIN if name == "din" else ZOO_TRAIN
        service.train_model(name, train_config=train, model_config=ZOO_MODEL_CONFIGS[name])
        use_fixed_kappa(service, TEST_KAPPA, name)
    service.engine.dispose()
    return state_dir


@pytest.fixture
def zoo_dir(zoo_state: Path, tmp_path: Path) -> Path:
    """A private copy of the state with every model trained."""
    copy = tmp_path / "zoo"
    shutil.copytree(zoo_state, copy, symlinks=True)
    return copy


@pytest.fixture
def state_dir(trained_state: Path, tmp_path: Path) -> Path:
    """A private copy of the trained state for one test."""
    copy = tmp_path / "state"
    shutil.copytree(trained_state, copy, symlinks=True)
    return copy


@pytest.fixture
def service(state_dir: Path) -> Iterator[RecService]:
    svc = RecService(tiny_settings(state_dir))
    svc.ensure_database()
    svc.load_model()
    yield svc
    svc.engine.dispose()


# ---- the app on a test state (AppTest reads RECDEMO_* like the real server) -------------------


def use_state(state: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("RECDEMO_STATE_DIR", str(state))
    monkeypatch.setenv("RECDEMO_WORLD_SIZE", "tiny")
    monkeypatch.setenv("RECDEMO_DEVICE", "cpu")
    monkeypatch.delenv("RECDEMO_DATABASE_URL", raising=False)
    monkeypatch.delenv("RECDEMO_MODEL_DIR", raising=False)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield state
    st.cache_resource.clear()
    gc.unfreeze()  # ui/state.py freezes the service's objects; give them back to the GC


@pytest.fixture
def app_env(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The tiny world with a trained SASRec."""
    yield from use_state(state_dir, monkeypatch)


@pytest.fixture
def zoo_env(zoo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The tiny world with every sequence model of the zoo trained."""
    yield from use_state(zoo_dir, monkeypatch)
