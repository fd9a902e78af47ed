"""Training as a background job: one per service (dataset), visible to every visitor.

A page starts the job and returns at once; the job runs in its own thread, so reruns, widget
changes and other visitors' clicks neither wait for it nor cancel it. Every page reads the same
:class:`JobStatus` (progress and a line of text per epoch). Cancelling is explicit: the next
progress report of the trainer (one per epoch) stops the run, and the model already served is
kept. Nothing here knows about Streamlit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

log = logging.getLogger(__name__)

JobState = Literal["running", "done", "failed", "cancelled"]
# (fraction done in [0, 1], a short description) -> None; raises Cancelled to stop.
Progress = Callable[[float, str], None]


class Cancelled(Exception):
    """Raised inside the job's progress report when someone asked to cancel."""


@dataclass(frozen=True)
class JobStatus:
    model: str
    state: JobState
    fraction: float = 0.0
    text: str = "starting"
    started: float = 0.0  # time.time() of the start
    finished: float | None = None
    error: str = ""  # why it failed, in words a visitor may see

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def elapsed_s(self) -> float:
        return (self.finished or time.time()) - self.started


class TrainingJob:
    """At most one training run at a time; the last run's status stays readable."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status: JobStatus | None = None
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def status(self) -> JobStatus | None:
        with self._lock:
            return self._status

    def start(self, model: str, run: Callable[[Progress], object]) -> bool:
        """Start ``run(progress)`` in the background; False (nothing started) while a run is on."""
        with self._lock:
            if self._status is not None and self._status.running:
                return False
            self._cancel.clear()
            self._status = JobStatus(model, "running", started=time.time())
            self._thread = threading.Thread(
                target=self._work, args=(model, run), name=f"train-{model}", daemon=True
            )
            self._thread.start()
            return True

    def cancel(self) -> bool:
        """Ask the running job to stop at its next progress report; False when none runs."""
        with self._lock:
            if self._status is None or not self._status.running:
                return False
            self._cancel.set()
            self._status = replace(self._status, text="cancelling at the end of this epoch")
            return True

    def wait(self, timeout: float | None = None) -> JobStatus | None:
        """Block until the current job ends (tests and the CLI)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.status

    def _progress(self, fraction: float, text: str) -> None:
        if self._cancel.is_set():
            raise Cancelled
        with self._lock:
            assert self._status is not None
            self._status = replace(self._status, fraction=min(1.0, fraction), text=text)

    def _finish(self, state: JobState, text: str, error: str = "") -> None:
        with self._lock:
            assert self._status is not None
            fraction = 1.0 if state == "done" else self._status.fraction
            self._status = replace(
                self._status,
                state=state,
                fraction=fraction,
                text=text,
                finished=time.time(),
                error=error,
            )

    def _work(self, model: str, run: Callable[[Progress], object]) -> None:
        try:
            run(self._progress)
        except Cancelled:
            self._finish("cancelled", "cancelled: the model served before is kept")
        except Exception as exc:  # a failed run is reported to the pages, never raised there
            log.exception("training %s failed", model)
            self._finish("failed", "failed", _public_reason(exc))
        else:
            self._finish("done", "done")


def _public_reason(exc: Exception) -> str:
    """A failure in a sentence, without paths or tracebacks."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{type(exc).__name__}: {text[:200]}"


__all__ = ["Cancelled", "JobState", "JobStatus", "Progress", "TrainingJob"]
