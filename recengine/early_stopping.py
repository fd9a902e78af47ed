"""Early stopping shared by the models that train in epochs.

The rule, the same everywhere: evaluate every ``eval_every`` epochs (and always at the last epoch
and once the time budget is spent), keep a copy of the state with the best validation metric
(validation NDCG@10 for the ranking models, RMSE for the rating model, hence
``higher_is_better``), and stop after ``patience`` evaluations without a strictly better value,
when the time budget is spent, or after ``max_epochs``.

A training loop reads::

    stopper = EarlyStopping(max_epochs=30, patience=3, eval_every=2, time_budget_s=60)
    for epoch in stopper.epochs():
        loss = train_one_epoch()
        metric = evaluate() if valid and stopper.evaluate_now() else None
        stopper.end_epoch(loss, metric, snapshot=net.state_dict)
    stopper.restore_best(net)
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

StopReason = Literal["max_epochs", "patience", "time_budget"]


@dataclass(frozen=True)
class EpochReport:
    """What one epoch did, for progress bars."""

    epoch: int
    max_epochs: int
    loss: float | None
    metric: float | None  # this epoch's validation metric; None when it was not evaluated
    best_metric: float | None
    best_epoch: int  # 0 until a first evaluation
    elapsed_s: float

    @property
    def fraction(self) -> float:
        return min(1.0, self.epoch / self.max_epochs)

    def describe(self, metric_name: str = "valid NDCG@10") -> str:
        text = f"epoch {self.epoch}/{self.max_epochs}"
        if self.loss is not None:
            text += f", loss {self.loss:.3f}"
        if self.metric is not None:
            text += f", {metric_name} {self.metric:.4f}"
        return text


EpochCallback = Callable[[EpochReport], None]


class _Restorable(Protocol):
    def load_state_dict(self, state: Any) -> Any: ...


class EarlyStopping:
    """Counts epochs, decides when to evaluate and when to stop, and keeps the best state."""

    def __init__(
        self,
        *,
        max_epochs: int,
        patience: int,
        eval_every: int = 1,
        time_budget_s: float | None = None,
        higher_is_better: bool = True,
        progress: EpochCallback | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if max_epochs < 1 or patience < 1 or eval_every < 1:
            raise ValueError(
                f"max_epochs, patience and eval_every must be at least 1, got {max_epochs}, "
                f"{patience} and {eval_every}"
            )
        if time_budget_s is not None and not time_budget_s >= 0:
            raise ValueError(f"time_budget_s must be >= 0 or None, got {time_budget_s}")
        self.max_epochs = max_epochs
        self.patience = patience
        self.eval_every = eval_every
        self.time_budget_s = time_budget_s
        self.higher_is_better = higher_is_better
        self.progress = progress
        self._clock = clock
        self._started = clock()
        self.epoch = 0  # the epoch running now, or the last one run
        self.best_metric: float | None = None
        self.best_epoch = 0
        self.best_state: Any = None
        self.evals_since_best = 0
        self.stop_reason: StopReason | None = None
        # Out-of-time is decided once per epoch (at the first question), so the evaluation
        # and the stop decision of one epoch agree even though evaluating takes time.
        self._out_of_time: bool | None = None
        self._ended = True

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self._started

    def epochs(self) -> Iterator[int]:
        """1, 2, … until a stop rule fires; call :meth:`end_epoch` once in every epoch."""
        for epoch in range(1, self.max_epochs + 1):
            self.epoch, self._out_of_time, self._ended = epoch, None, False
            yield epoch
            if not self._ended:
                raise RuntimeError(f"end_epoch() was not called in epoch {epoch}")
            if self.stop_reason is not None:
                return
        self.stop_reason = "max_epochs"

    def out_of_time(self) -> bool:
        if self._out_of_time is None:
            budget = self.time_budget_s
            self._out_of_time = budget is not None and self.elapsed_s > budget
        return self._out_of_time

    def evaluate_now(self) -> bool:
        """Whether this epoch should be evaluated: every ``eval_every``, the last, out of time."""
        return (
            self.epoch % self.eval_every == 0 or self.epoch == self.max_epochs or self.out_of_time()
        )

    def is_better(self, metric: float) -> bool:
        if math.isnan(metric):
            return False
        if self.best_metric is None:
            return True
        return metric > self.best_metric if self.higher_is_better else metric < self.best_metric

    def end_epoch(
        self,
        loss: float | None = None,
        metric: float | None = None,
        snapshot: Callable[[], Any] | None = None,
    ) -> bool:
        """Record the epoch; with a ``metric``, compare it and copy ``snapshot()`` if it is the
        best so far. Returns True when the loop should stop now."""
        if self._ended:
            raise RuntimeError("end_epoch() called outside epochs() or twice in one epoch")
        self._ended = True
        if metric is not None:
            if self.is_better(metric):
                self.best_metric, self.best_epoch, self.evals_since_best = metric, self.epoch, 0
                if snapshot is not None:
                    self.best_state = copy.deepcopy(snapshot())
            else:
                self.evals_since_best += 1
        if self.progress is not None:
            self.progress(
                EpochReport(
                    self.epoch,
                    self.max_epochs,
                    loss,
                    metric,
                    self.best_metric,
                    self.best_epoch,
                    self.elapsed_s,
                )
            )
        if self.out_of_time():
            self.stop_reason = "time_budget"
        elif self.evals_since_best >= self.patience:
            self.stop_reason = "patience"
        return self.stop_reason is not None

    def restore_best(self, module: _Restorable) -> None:
        """Load the best state into ``module``; no-op when nothing was evaluated."""
        if self.best_state is not None:
            module.load_state_dict(self.best_state)


__all__ = ["EarlyStopping", "EpochCallback", "EpochReport", "StopReason"]
