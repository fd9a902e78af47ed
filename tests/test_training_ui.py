"""Training from a page is a background job: it survives reruns and widget changes, every
visitor sees it, a second request gets a notice, and cancelling is an explicit button."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

import recengine.service_models
from recengine.checkpoint import WEIGHTS_FILE
from tests.conftest import TINY_MODEL, TINY_TRAIN
from tests.test_app import APP, TIMEOUT, texts
from ui.state import _service


class Gate:
    """Holds the real training at its first progress report until the test opens it."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.open = threading.Event()


@pytest.fixture
def gated_training(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    """The app's real training path, with the tiny model's config and a gate."""
    gate = Gate()
    real = recengine.service_models.train_app_model

    def train(*args: Any, progress: Any = None, **kwargs: Any) -> Any:
        config = args[4]
        config["train"] = asdict(TINY_TRAIN)
        config["model"].update(TINY_MODEL)

        def gated(fraction: float, text: str) -> None:
            gate.reached.set()
            assert gate.open.wait(120)
            if progress is not None:
                progress(fraction, text)

        return real(*args, progress=gated, **kwargs)

    monkeypatch.setattr(recengine.service_models, "train_app_model", train)
    shutil.rmtree(app_env / "models" / "synthetic" / "sasrec-default")
    yield gate
    gate.open.set()
    _service("synthetic").job.wait(120)


def visitor() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    return at


def test_training_survives_widget_changes_and_a_second_request_gets_a_notice(
    app_env: Path, gated_training: Gate
) -> None:
    first, second = visitor(), visitor()  # both see "Train" before anyone clicks
    first.button(key="train_sasrec").click().run()
    assert not first.exception
    assert gated_training.reached.wait(60)
    second.button(key="train_sasrec").click().run()  # the same click a moment later
    assert not second.exception
    assert any("being trained already" in i.value for i in second.info)
    # The first visitor changes a widget and moves on: the job does not notice.
    first.sidebar.selectbox(key="current_device__widget").set_value("mobile").run()
    first.switch_page("pages/4_Model_Lab.py").run()
    assert not first.exception
    service = _service("synthetic")
    status = service.training_status()
    assert status is not None and status.running
    third = visitor()  # a new visitor sees the progress, not a Train button
    assert "Training" in texts(third)
    assert not [b for b in third.button if b.key == "train_sasrec"]
    gated_training.open.set()
    done = service.job.wait(180)
    assert done is not None and done.state == "done", done
    assert (app_env / "models" / "synthetic" / "sasrec-default" / WEIGHTS_FILE).is_file()
    assert service.model_status("sasrec").ready
    third.run()
    assert "No attention model" not in texts(third)


def test_cancel_is_explicit_and_keeps_no_half_model(app_env: Path, gated_training: Gate) -> None:
    at = visitor()
    at.button(key="train_sasrec").click().run()
    assert gated_training.reached.wait(60)
    service = _service("synthetic")
    assert service.cancel_training()  # what the Cancel button of the progress panel calls
    gated_training.open.set()
    done = service.job.wait(120)
    assert done is not None and done.state == "cancelled"
    assert not (app_env / "models" / "synthetic" / "sasrec-default" / WEIGHTS_FILE).exists()
    at.run()
    assert not at.exception
    assert "was cancelled" in texts(at)
