"""The shared early-stopping rule, driven by scripted metric sequences checked by hand."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from recengine.early_stopping import EarlyStopping, EpochReport


def drive(
    metrics: Sequence[float], stopper: EarlyStopping, clock: list[float] | None = None
) -> list[int]:
    """Run the loop with metrics[epoch - 1] as the validation value; the evaluated epochs."""
    evaluated = []
    for epoch in stopper.epochs():
        if clock is not None:
            clock[0] += 4.0  # every epoch takes 4 s
        metric = None
        if stopper.evaluate_now():
            metric = metrics[epoch - 1]
            evaluated.append(epoch)
        stopper.end_epoch(loss=1.0 / epoch, metric=metric, snapshot=lambda e=epoch: {"epoch": e})
    return evaluated


def test_every_epoch_patience_two_ties_do_not_count() -> None:
    stopper = EarlyStopping(max_epochs=10, patience=2)
    # best 0.3 at epoch 2; epoch 3 (0.2) and epoch 4 (0.3, a tie) are two evals without a
    # strictly better value, so it stops after epoch 4 and never sees the 0.9.
    evaluated = drive([0.1, 0.3, 0.2, 0.3, 0.25, 0.9, 0.9, 0.9, 0.9, 0.9], stopper)
    assert evaluated == [1, 2, 3, 4]
    assert (stopper.epoch, stopper.best_epoch, stopper.best_metric) == (4, 2, 0.3)
    assert stopper.best_state == {"epoch": 2}
    assert stopper.stop_reason == "patience"


def test_eval_every_counts_evaluations_not_epochs() -> None:
    stopper = EarlyStopping(max_epochs=20, patience=2, eval_every=3)
    metrics = [0.0] * 20
    metrics[2], metrics[5], metrics[8], metrics[11] = 0.2, 0.5, 0.4, 0.45
    evaluated = drive(metrics, stopper)
    # Evaluated at 3, 6, 9, 12; best at 6; 9 and 12 are the two evals without improvement.
    assert evaluated == [3, 6, 9, 12]
    assert (stopper.epoch, stopper.best_epoch, stopper.stop_reason) == (12, 6, "patience")


def test_last_epoch_is_always_evaluated() -> None:
    stopper = EarlyStopping(max_epochs=7, patience=5, eval_every=3)
    evaluated = drive([0.1, 0.1, 0.2, 0.1, 0.1, 0.1, 0.6], stopper)
    assert evaluated == [3, 6, 7]
    assert (stopper.best_epoch, stopper.best_metric, stopper.stop_reason) == (7, 0.6, "max_epochs")


def test_lower_is_better_for_rmse() -> None:
    stopper = EarlyStopping(max_epochs=30, patience=3, higher_is_better=False)
    evaluated = drive([1.0, 0.9, 0.95, 0.85, 0.86, 0.87, 0.88, 0.5], stopper)
    assert evaluated == [1, 2, 3, 4, 5, 6, 7]  # best 0.85 at 4, then 5, 6, 7 without
    assert (stopper.best_epoch, stopper.best_metric, stopper.stop_reason) == (4, 0.85, "patience")


def test_time_budget_forces_a_last_evaluation_and_stops() -> None:
    clock = [0.0]
    stopper = EarlyStopping(
        max_epochs=100, patience=10, eval_every=5, time_budget_s=10.0, clock=lambda: clock[0]
    )
    # Epochs end at 4, 8, 12 s: epoch 3 is past the 10 s budget, evaluated although 3 % 5 != 0.
    evaluated = drive([0.1, 0.2, 0.3] + [0.0] * 97, stopper, clock)
    assert evaluated == [3]
    assert (stopper.epoch, stopper.best_epoch, stopper.stop_reason) == (3, 3, "time_budget")


def test_without_metrics_it_runs_every_epoch_and_keeps_no_state() -> None:
    stopper = EarlyStopping(max_epochs=4, patience=1)
    for _ in stopper.epochs():
        stopper.end_epoch(loss=0.5)
    assert (stopper.epoch, stopper.stop_reason, stopper.best_state) == (4, "max_epochs", None)
    assert stopper.best_epoch == 0 and stopper.best_metric is None


def test_nan_never_improves() -> None:
    stopper = EarlyStopping(max_epochs=10, patience=2)
    drive([math.nan, 0.1, math.nan, math.nan, 0.9] + [0.0] * 5, stopper)
    assert (stopper.epoch, stopper.best_epoch, stopper.best_metric) == (4, 2, 0.1)


def test_best_state_is_a_copy() -> None:
    state = {"w": [1.0]}
    stopper = EarlyStopping(max_epochs=2, patience=1)
    for epoch in stopper.epochs():
        stopper.end_epoch(metric=[0.5, 0.1][epoch - 1], snapshot=lambda: state)
        state["w"][0] += 1.0  # training goes on changing the live state
    assert stopper.best_state == {"w": [1.0]}


def test_restore_best_loads_the_best_state_or_nothing() -> None:
    class Net:
        state: object = "live"

        def load_state_dict(self, state: object) -> None:
            self.state = state

    net = Net()
    never_evaluated = EarlyStopping(max_epochs=1, patience=1)
    for _ in never_evaluated.epochs():
        never_evaluated.end_epoch()
    never_evaluated.restore_best(net)
    assert net.state == "live"

    stopper = EarlyStopping(max_epochs=3, patience=5)
    drive([0.2, 0.5, 0.4], stopper)
    stopper.restore_best(net)
    assert net.state == {"epoch": 2}


def test_progress_reports_each_epoch() -> None:
    reports: list[EpochReport] = []
    stopper = EarlyStopping(max_epochs=4, patience=3, eval_every=2, progress=reports.append)
    drive([0.0, 0.4, 0.0, 0.3], stopper)
    assert [r.epoch for r in reports] == [1, 2, 3, 4]
    assert [r.metric for r in reports] == [None, 0.4, None, 0.3]
    assert [r.best_epoch for r in reports] == [0, 2, 2, 2]
    assert [r.fraction for r in reports] == [0.25, 0.5, 0.75, 1.0]
    assert reports[1].describe() == "epoch 2/4, loss 0.500, valid NDCG@10 0.4000"


def test_misuse_is_refused() -> None:
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(max_epochs=5, patience=0)
    with pytest.raises(ValueError, match="time_budget_s"):
        EarlyStopping(max_epochs=5, patience=1, time_budget_s=-1.0)
    stopper = EarlyStopping(max_epochs=5, patience=1)
    with pytest.raises(RuntimeError, match="end_epoch"):
        for _ in stopper.epochs():
            pass  # forgot end_epoch
    with pytest.raises(RuntimeError, match="outside"):
        EarlyStopping(max_epochs=5, patience=1).end_epoch(metric=0.1)
