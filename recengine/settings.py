"""One settings object, read from ``RECDEMO_*`` environment variables when asked for.

Nothing here is read at import time: tests and the CLI build a ``Settings`` with the values they
need; the app and the CLI call :meth:`Settings.from_env` once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_STATE_DIR = Path("data")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    """Where the app keeps its state and how it recommends.

    ``state_dir`` holds the SQLite file (``app.db``) and ``models/``. ``database_url`` overrides
    the SQLite file with any SQLAlchemy URL. ``RECDEMO_DATA_DIR`` is kept for external data sets
    (MovieLens), so the app's own state has its own variable, ``RECDEMO_STATE_DIR``.
    """

    state_dir: Path = DEFAULT_STATE_DIR
    database_url: str | None = None
    model_dir_override: Path | None = None
    # The attention model joins the blend once a user has this many events it knows; fewer get
    # content-based picks (w(n) then moves the weight over smoothly, see recengine/ranking.py).
    cold_start_min_events: int = 1
    # Seed of the synthetic world and of model training: same seed, same rows, same weights.
    seed: int = 7
    # Size of the synthetic world made on first start ("default" or "tiny", see db/synthetic.py).
    world_size: str = "default"
    # The dataset the app works on. "synthetic" is made on first start; others are imported
    # (python -m recengine db import movielens PATH --name NAME).
    dataset: str = "synthetic"
    # "auto" picks CUDA when present, else CPU.
    device: str = "auto"
    # Torch threads of the app's process. One: every request is a small forward pass, and two
    # OpenMP threads that spin while the browser (or another request) holds the other core made
    # a click's model work ~10× slower on a 2-core machine (measured: bench/browser.py).
    torch_threads: int = 1

    @classmethod
    def from_env(cls) -> Settings:
        model_dir = os.environ.get("RECDEMO_MODEL_DIR")
        return cls(
            state_dir=Path(os.environ.get("RECDEMO_STATE_DIR") or DEFAULT_STATE_DIR),
            database_url=os.environ.get("RECDEMO_DATABASE_URL") or None,
            model_dir_override=Path(model_dir) if model_dir else None,
            cold_start_min_events=_env_int("RECDEMO_COLD_START_MIN_EVENTS", 1),
            seed=_env_int("RECDEMO_SEED", 7),
            world_size=os.environ.get("RECDEMO_WORLD_SIZE", "default"),
            dataset=os.environ.get("RECDEMO_DATASET") or "synthetic",
            device=os.environ.get("RECDEMO_DEVICE", "auto"),
            torch_threads=_env_int("RECDEMO_TORCH_THREADS", 1),
        )

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.state_dir / 'app.db').as_posix()}"

    @property
    def model_dir(self) -> Path:
        return self.model_dir_override or self.state_dir / "models"

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]
