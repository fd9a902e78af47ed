"""The CLI and the app's error paths: clear messages, no tracebacks, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from recengine.cli import main
from tests.test_app import APP, TIMEOUT
from ui.text import plain


@pytest.fixture
def env(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RECDEMO_STATE_DIR", str(state_dir))
    monkeypatch.setenv("RECDEMO_WORLD_SIZE", "tiny")
    monkeypatch.setenv("RECDEMO_DEVICE", "cpu")
    monkeypatch.delenv("RECDEMO_DATABASE_URL", raising=False)
    monkeypatch.delenv("RECDEMO_MODEL_DIR", raising=False)
    return state_dir


def test_status_reports_counts_and_model(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["items"] == 240
    assert report["model_ready"] is True
    assert report["metrics"]["sasrec"]["test"]["n_cases"] > 0


def test_bootstrap_with_a_model_does_not_retrain(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = env / "models" / "synthetic" / "sasrec-default" / "weights.pt"
    before = weights.stat().st_mtime_ns
    assert main(["bootstrap"]) == 0
    assert "Model ready" in capsys.readouterr().out
    assert weights.stat().st_mtime_ns == before


def test_unusable_database_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "db-is-a-folder.db"
    folder.mkdir()
    monkeypatch.setenv("RECDEMO_DATABASE_URL", f"sqlite:///{folder}")
    monkeypatch.setenv("RECDEMO_STATE_DIR", str(tmp_path))
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert "db-is-a-folder.db" in err and "Cannot open or write the database" in err


def test_app_shows_database_error_instead_of_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "db-is-a-folder.db"
    folder.mkdir()
    monkeypatch.setenv("RECDEMO_DATABASE_URL", f"sqlite:///{folder}")
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    st.cache_resource.clear()
    assert not at.exception
    assert any("db-is-a-folder.db" in e.value.replace("\\", "") for e in at.error)


def test_plain_text_escapes_html_and_markdown() -> None:
    assert plain("<b>Grace</b>") == r"\<b\>Grace\</b\>"
    assert plain("**bold** [link](x)") == r"\*\*bold\*\* \[link\]\(x\)"
    assert plain("Café 9.99") == r"Café 9\.99"


def test_db_seed_upgrade_and_stats(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade"]) == 0
    assert "Schema at revision" in capsys.readouterr().out
    assert main(["db", "seed", "--size", "tiny", "--seed", "3"]) == 0
    assert "as dataset 'synthetic-tiny-3'" in capsys.readouterr().out
    assert main(["db", "seed", "--size", "tiny", "--seed", "3"]) == 2  # the name is taken
    assert "already exists" in capsys.readouterr().err
    assert main(["db", "stats"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert set(stats["datasets"]) == {"synthetic", "synthetic-tiny-3"}
    assert stats["datasets"]["synthetic"]["users"] == 200
    assert stats["datasets"]["synthetic-tiny-3"]["items"] == 240
    assert main(["db", "seed", "--size", "huge"]) == 2
    assert "Unknown world size 'huge'" in capsys.readouterr().err


def test_db_import_movielens_and_open_it(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fixture = Path(__file__).resolve().parent / "fixtures" / "movielens" / "ml-1m"
    assert main(["db", "import", "movielens", str(fixture), "--name", "ml-fixture"]) == 0
    out = capsys.readouterr().out
    assert "as dataset 'ml-fixture'" in out
    assert main(["db", "import", "movielens", str(fixture), "--name", "ml-fixture"]) == 2
    assert "ml-fixture" in capsys.readouterr().err  # the name is taken; nothing written
    assert main(["db", "import", "movielens", str(env / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["db", "stats"]) == 0
    stats = json.loads(capsys.readouterr().out)["datasets"]
    assert stats["ml-fixture"]["kind"] == "movielens-1m"
    assert stats["ml-fixture"]["events"] > 0
