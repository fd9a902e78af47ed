"""One settings object, read from ``RECDEMO_*`` environment variables when asked for.

Nothing here is read at import time: tests and the CLI build a ``Settings`` with the values they
need; the app and the CLI call :meth:`Settings.from_env` once.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_STATE_DIR = Path("data")


class SettingsError(ValueError):
    """A setting that cannot work; the message names the variable and what it accepts. The app
    shows it as a page error, the CLI prints it and exits with 2."""


# What RECDEMO_DEVICE accepts: "auto" (CUDA when present, else CPU), or a torch device name.
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def _env_int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


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
        """The settings of the ``RECDEMO_*`` variables, checked (:class:`SettingsError`)."""
        model_dir = os.environ.get("RECDEMO_MODEL_DIR")
        return cls(
            state_dir=Path(os.environ.get("RECDEMO_STATE_DIR") or DEFAULT_STATE_DIR),
            database_url=os.environ.get("RECDEMO_DATABASE_URL") or None,
            model_dir_override=Path(model_dir) if model_dir else None,
            cold_start_min_events=_env_int("RECDEMO_COLD_START_MIN_EVENTS", 1, 0),
            seed=_env_int("RECDEMO_SEED", 7, 0),
            world_size=os.environ.get("RECDEMO_WORLD_SIZE", "default"),
            dataset=os.environ.get("RECDEMO_DATASET") or "synthetic",
            device=os.environ.get("RECDEMO_DEVICE", "auto"),
            torch_threads=_env_int("RECDEMO_TORCH_THREADS", 1, 1),
        ).checked()

    def checked(self) -> Settings:
        """These settings, or :class:`SettingsError` naming the first one that cannot work: a
        device torch does not know, a world size, a database URL SQLAlchemy cannot read."""
        from db.synthetic.config import WORLD_SIZES  # late: settings stay cheap to import

        if not DEVICE_PATTERN.fullmatch(self.device):
            raise SettingsError(
                f"RECDEMO_DEVICE must be auto, cpu, cuda or cuda:N, got {self.device!r}"
            )
        if self.world_size not in WORLD_SIZES:
            raise SettingsError(
                f"RECDEMO_WORLD_SIZE must be one of {', '.join(sorted(WORLD_SIZES))}, "
                f"got {self.world_size!r}"
            )
        if self.database_url is not None:
            try:
                make_url(self.database_url)
            except ArgumentError:
                # The URL itself is not repeated: it may hold a password.
                raise SettingsError(
                    "RECDEMO_DATABASE_URL is not a database URL (expected, for example, "
                    "postgresql+psycopg://user@host:5432/name or sqlite:///path/app.db)"
                ) from None
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.state_dir / 'app.db').as_posix()}"

    @property
    def model_dir(self) -> Path:
        return self.model_dir_override or self.state_dir / "models"

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]
