"""A safe server: checked settings, secrets never printed, the access password, the config."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from db.engine import database_name, describe_location
from recengine.cli import main
from recengine.settings import Settings, SettingsError
from tests.test_app import APP, TIMEOUT, service_of, texts
from ui.access import matches

ROOT = Path(__file__).resolve().parent.parent
SECRET_URL = "postgresql+psycopg://bob:pw-in-userinfo@127.0.0.1:1/shop?password=pw-in-query"


def fresh_app() -> AppTest:
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    return at


@pytest.fixture
def cleared() -> Iterator[None]:
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


# ---- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("RECDEMO_DEVICE", "gpu", "RECDEMO_DEVICE must be auto, cpu, cuda or cuda:N"),
        ("RECDEMO_WORLD_SIZE", "huge", "RECDEMO_WORLD_SIZE must be one of"),
        ("RECDEMO_SEED", "seven", "RECDEMO_SEED must be a whole number"),
        ("RECDEMO_TORCH_THREADS", "0", "RECDEMO_TORCH_THREADS must be at least 1"),
        ("RECDEMO_DATABASE_URL", "not a url", "RECDEMO_DATABASE_URL is not a database URL"),
    ],
)
def test_a_bad_setting_is_one_clear_sentence_in_the_app_and_the_cli(
    app_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    cleared: None,
    variable: str,
    value: str,
    said: str,
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=said):
        Settings.from_env()
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err
    at = fresh_app()
    assert not at.exception
    errors = [e.value.replace("\\", "") for e in at.error]
    assert any(said in e for e in errors), errors


def test_cuda_asked_for_on_a_machine_without_it_is_refused_and_auto_falls_back(
    app_env: Path, monkeypatch: pytest.MonkeyPatch, cleared: None
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: nothing falls back")
    monkeypatch.setenv("RECDEMO_DEVICE", "cuda")
    at = fresh_app()
    assert not at.exception
    assert any("CUDA is not available" in e.value for e in at.error)
    assert main(["status"]) == 2
    monkeypatch.setenv("RECDEMO_DEVICE", "auto")
    at = fresh_app()
    assert not at.exception and not at.error
    assert any("the models run on the CPU" in c.value for c in at.sidebar.caption)


# ---- secrets ----------------------------------------------------------------------------------


def test_a_password_in_the_url_is_masked_wherever_the_url_is_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shown = describe_location(SECRET_URL)
    assert "pw-in-userinfo" not in shown and "pw-in-query" not in shown
    assert "127.0.0.1" in shown and "shop" in shown  # still says which database
    assert database_name(SECRET_URL) == "postgresql database shop"
    # The CLI on that URL (nothing listens on port 1): an error that names it, masked.
    monkeypatch.setenv("RECDEMO_DATABASE_URL", SECRET_URL)
    monkeypatch.setenv("RECDEMO_STATE_DIR", str(tmp_path))
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert "pw-in-" not in err and "127.0.0.1" in err


def test_the_app_on_that_url_shows_neither_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cleared: None
) -> None:
    monkeypatch.setenv("RECDEMO_DATABASE_URL", SECRET_URL)
    monkeypatch.setenv("RECDEMO_STATE_DIR", str(tmp_path))
    at = fresh_app()
    assert not at.exception
    shown = "\n".join(e.value for e in at.error)
    assert "cannot be used" in shown
    assert "pw-in-" not in shown and "127.0.0.1" not in shown  # named, not located


# ---- the access password ----------------------------------------------------------------------


def test_the_password_gate_lets_nobody_in_until_the_password_is_typed(
    app_env: Path, monkeypatch: pytest.MonkeyPatch, cleared: None
) -> None:
    monkeypatch.setenv("RECDEMO_ACCESS_PASSWORD", "open sesame")
    users = service_of(app_env).counts()["users"]
    at = fresh_app()
    assert not at.exception
    assert "Browsing as" not in texts(at)
    at.text_input(key="access_guess").input("open says me")
    at.button[0].click().run()
    assert any("not the password" in e.value for e in at.error)
    assert "Browsing as" not in texts(at)
    assert service_of(app_env).counts()["users"] == users  # no guest for a visitor outside
    at.text_input(key="access_guess").input("open sesame")
    at.button[0].click().run()
    assert not at.exception
    assert "Browsing as" in texts(at)
    assert "open sesame" not in texts(at)
    assert service_of(app_env).counts()["users"] == users + 1


def test_access_is_open_without_a_password(
    app_env: Path, monkeypatch: pytest.MonkeyPatch, cleared: None
) -> None:
    monkeypatch.delenv("RECDEMO_ACCESS_PASSWORD", raising=False)
    at = fresh_app()
    assert "Browsing as" in texts(at)


def test_matching_is_exact() -> None:
    assert matches("pässword", "pässword")
    assert not matches("pässword", "pässwor")
    assert not matches("", "x")


# ---- the server's configuration ---------------------------------------------------------------


def test_the_server_config_hides_details_and_deploy_and_checks_forms() -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == "none"
    assert config["client"]["toolbarMode"] == "viewer"  # no Deploy button
    assert config["server"]["enableXsrfProtection"] is True
    assert config["server"]["maxUploadSize"] <= 50  # ml-1m's zip is 6 MB
    assert config["browser"]["gatherUsageStats"] is False
