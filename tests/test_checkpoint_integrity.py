"""Checkpoints that cannot lie: one atomic switch per save, weights checked against their card's
SHA-256, card fields of the types the pages read, and messages without server paths."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from recengine import checkpoint
from recengine.blend import BLEND_FILE, BlendConfig, load_blend_config, save_blend_config
from recengine.checkpoint import (
    CARD_FIELDS,
    CARD_FILE,
    CURRENT_LINK,
    VERSION_PREFIX,
    WEIGHTS_FILE,
    CheckpointError,
    ModelCard,
    load_checkpoint,
    read_card,
)
from recengine.model_shelf import ModelShelf, _public, model_folder
from recengine.models.sasrec import SASRec, SASRecConfig
from tests.test_checkpoint import SMALL, save

ROOT = Path(__file__).resolve().parents[1]
ITEMS = [10, 11, 12, 13, 14]
TEST_METRICS = {"hr@10": 0.5, "ndcg@10": 0.25, "mrr@10": 0.2, "n_cases": 40}


def sasrec(seed: int) -> SASRec:
    torch.manual_seed(seed)
    return SASRec(SASRecConfig(n_items=len(ITEMS), **SMALL)).eval()


def metrics(ndcg: float) -> dict[str, Any]:
    """A card's metrics as the trainer writes them, with a recognisable NDCG@10."""
    own = {**TEST_METRICS, "ndcg@10": ndcg}
    return {"sasrec": {"valid": own, "test": own}, "popularity": {"test": TEST_METRICS}}


def save_version(folder: Path, seed: int, tag: str) -> SASRec:
    """Save a model whose card says which one it is (fingerprint ``tag``, NDCG@10 = seed)."""
    model = sasrec(seed)
    save(folder, model, ITEMS, data_fingerprint=tag, dataset="synthetic", metrics=metrics(seed))
    return model


def assert_loads_as(folder: Path, model: SASRec, tag: str, seed: int) -> None:
    """The folder loads ``model``'s weights under ``model``'s own card."""
    loaded = load_checkpoint(folder)
    assert loaded.card.data_fingerprint == tag
    assert loaded.card.metrics["sasrec"]["test"]["ndcg@10"] == seed
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], tensor)


def versions(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(VERSION_PREFIX))


def write_plain_checkpoint(folder: Path, model: SASRec, tag: str) -> None:
    """A folder as older code wrote it: plain files, a card without the weights' SHA-256."""
    folder.mkdir(parents=True)
    torch.save(model.state_dict(), folder / WEIGHTS_FILE)
    config = model.config.to_dict()
    card = ModelCard("sasrec", config, ITEMS, tag, "catalog-fp", dataset="synthetic")
    raw = json.loads(card.to_json())
    del raw["weights_sha256"]
    (folder / CARD_FILE).write_text(json.dumps(raw))


# ---- one atomic switch ------------------------------------------------------------------------


def test_a_save_that_fails_before_the_switch_leaves_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "sasrec-default"
    old = save_version(folder, 1, "old")
    written = []

    def write_then_fail(path: Path, data: bytes) -> None:
        written.append(path.name)
        if path.name == CARD_FILE:  # the new weights are on disk, their card is not
            raise OSError("disk full")
        path.write_bytes(data)

    monkeypatch.setattr(checkpoint, "_write_new", write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_version(folder, 2, "new")
    assert written == [WEIGHTS_FILE, CARD_FILE]
    assert_loads_as(folder, old, "old", 1)
    assert len(versions(folder)) == 1  # the half-written version is gone


def test_a_process_killed_between_weights_and_card_leaves_the_previous_checkpoint(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "sasrec-default"
    old = save_version(folder, 1, "old")
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from recengine import checkpoint
        from tests.test_checkpoint_integrity import save_version

        write = checkpoint._write_new
        def write_then_die(path, data):
            if path.name == checkpoint.CARD_FILE:
                os._exit(9)  # killed: no clean-up runs
            write(path, data)
        checkpoint._write_new = write_then_die
        save_version(Path({str(folder)!r}), 2, "new")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=False)
    assert run.returncode == 9
    assert len(versions(folder)) == 2  # the orphan with the new weights only
    assert_loads_as(folder, old, "old", 1)
    new = save_version(folder, 3, "newer")  # the next save clears the orphan
    assert_loads_as(folder, new, "newer", 3)
    assert len(versions(folder)) == 1


def test_saving_twice_keeps_one_version_the_snapshot_and_drops_the_old_blend(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "sasrec-default"
    save_version(folder, 1, "one")
    save_blend_config(folder, BlendConfig({"1": 2.0}, data_fingerprint="one"))
    (folder / "snapshot.pt").write_bytes(b"a training snapshot")
    first = versions(folder)
    # The same data: the old blend would pass its fingerprint check, so only the save drops it.
    model = sasrec(2)
    save(folder, model, ITEMS, data_fingerprint="one", dataset="synthetic", metrics=metrics(2))
    assert not (folder / BLEND_FILE).exists()
    with pytest.raises(CheckpointError, match="No blend config"):
        load_blend_config(folder, "one")
    assert (folder / "snapshot.pt").read_bytes() == b"a training snapshot"
    assert len(versions(folder)) == 1 and versions(folder) != first
    assert os.readlink(folder / CURRENT_LINK) == versions(folder)[0]
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        CARD_FILE,
        "snapshot.pt",
        WEIGHTS_FILE,
    ]
    assert_loads_as(folder, model, "one", 2)


def test_an_old_plain_folder_loads_and_the_first_save_over_it_migrates(tmp_path: Path) -> None:
    folder = tmp_path / "sasrec-default"
    old = sasrec(1)
    write_plain_checkpoint(folder, old, "old")
    loaded = load_checkpoint(folder)  # no SHA-256 on the card: not checked
    assert loaded.card.data_fingerprint == "old" and loaded.card.weights_sha256 == ""
    new = save_version(folder, 2, "new")
    assert (folder / WEIGHTS_FILE).is_symlink() and (folder / CARD_FILE).is_symlink()
    assert len(versions(folder)) == 1
    assert_loads_as(folder, new, "new", 2)


class Crash(BaseException):
    """Stands for a kill: no ``except Exception`` of the code under test catches it."""


@pytest.mark.parametrize("fail_at", range(5))
def test_every_step_of_a_migration_leaves_a_matching_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: int
) -> None:
    """Adopting the plain files takes three renames, the switch one more: a crash after any of
    them loads the old pair or the new one, each under its own card."""
    folder = tmp_path / "sasrec-default"
    old = sasrec(1)
    write_plain_checkpoint(folder, old, "old")
    link, calls = checkpoint._link, []

    def link_or_crash(directory: Path, name: str, target: str) -> None:
        if len(calls) == fail_at:
            raise Crash  # nothing after it runs, as after a kill
        calls.append(name)
        link(directory, name, target)

    monkeypatch.setattr(checkpoint, "_link", link_or_crash)
    new = sasrec(2)
    with contextlib.suppress(Crash):
        save(folder, new, ITEMS, data_fingerprint="new", dataset="synthetic")
    monkeypatch.undo()
    loaded = load_checkpoint(folder)
    assert loaded.card.data_fingerprint == ("new" if fail_at == 4 else "old")
    expected = new if fail_at == 4 else old
    for name, tensor in expected.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], tensor)


def test_a_load_that_straddles_a_save_reads_the_new_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "sasrec-default"
    save_version(folder, 1, "old")
    read, saved = checkpoint._read_card, []

    def read_then_save(card_path: Path, shown: Path) -> ModelCard:
        card = read(card_path, shown)
        if not saved:  # a save switches (and removes the old version) after the card was read
            saved.append(save_version(folder, 2, "new"))
        return card

    monkeypatch.setattr(checkpoint, "_read_card", read_then_save)
    loaded = load_checkpoint(folder)
    assert loaded.card.data_fingerprint == "new"
    for name, tensor in saved[0].state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], tensor)


# ---- the weights' SHA-256 ---------------------------------------------------------------------


def test_weights_replaced_after_saving_are_refused_and_the_shelf_says_why(
    tmp_path: Path,
) -> None:
    real = tmp_path / "real-models"
    folder = model_folder(real, "synthetic", "sasrec")
    save_version(folder, 1, "one")
    other = tmp_path / "other"
    save_version(other, 2, "two")
    card = read_card(folder)
    assert len(card.weights_sha256) == 64
    # Another model of the same shape: torch would load it without a word.
    (folder / WEIGHTS_FILE).write_bytes((other / WEIGHTS_FILE).read_bytes())
    with pytest.raises(CheckpointError, match="do not match their card"):
        load_checkpoint(folder)
    # The shelf reads the models through a linked folder: neither path may reach a visitor.
    linked = tmp_path / "models"
    linked.symlink_to(real)
    info = ModelShelf(linked, "synthetic", torch.device("cpu")).info("sasrec")
    assert not info.ready and info.trained
    assert "weights.pt cannot be loaded: they do not match their card" in info.message
    assert "Retrain" in info.message
    for hidden in (str(tmp_path), VERSION_PREFIX, CURRENT_LINK):
        assert hidden not in info.message


def test_a_fresh_save_is_noticed_by_the_shelf(tmp_path: Path) -> None:
    folder = model_folder(tmp_path, "synthetic", "sasrec")
    save_version(folder, 1, "one")
    shelf = ModelShelf(tmp_path, "synthetic", torch.device("cpu"))
    assert shelf.get("sasrec").loaded.card.data_fingerprint == "one"
    stat = (folder / CARD_FILE).stat()
    save_version(folder, 2, "two")
    # Same mtimes, as within a coarse file system clock: the version still tells them apart.
    for name in (CARD_FILE, WEIGHTS_FILE):
        os.utime(folder / name, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert shelf.get("sasrec").loaded.card.data_fingerprint == "two"


def test_public_messages_name_no_version_folder(tmp_path: Path) -> None:
    folder = tmp_path / "sasrec-default"
    save_version(folder, 1, "one")
    version = Path(os.path.realpath(folder / WEIGHTS_FILE)).parent
    message = f"Model weights {version / WEIGHTS_FILE} cannot be loaded; see {folder}"
    public = _public(message, folder)
    assert public == "Model weights weights.pt cannot be loaded; see the checkpoint folder"


# ---- the card's field types -------------------------------------------------------------------

WRONG_FIELDS: list[tuple[str, Any]] = [
    ("metrics", {"sasrec": {}}),  # the pages index metrics["sasrec"]["test"]["ndcg@10"]
    ("metrics", {"sasrec": {"test": TEST_METRICS}}),  # popularity beside it is shown too
    ("metrics", {"sasrec": {"test": {**TEST_METRICS, "hr@10": "high"}}}),
    ("metrics", [1, 2]),
    ("training", "x"),
    ("training", {"train_seconds": "fast"}),
    ("training", {"stop_reason": 3}),
    ("item_ids", [10, 11, "12", 13, 14]),
    ("item_ids", [10, 11, True, 13, 14]),
    ("model_config", ["d_model", 8]),
    ("token_vocab", [1, 2]),
    ("dataset", 3),
    ("data_fingerprint", None),
    ("catalog_fingerprint", ["x"]),
    ("model", 5),
    ("format_version", True),
    ("weights_sha256", "not a digest"),
]


@pytest.mark.parametrize(("name", "value"), WRONG_FIELDS)
def test_a_card_field_of_the_wrong_type_is_refused_by_name(
    tmp_path: Path, name: str, value: Any
) -> None:
    folder = tmp_path / "sasrec-default"
    save_version(folder, 1, "one")
    card = json.loads((folder / CARD_FILE).read_text())
    card[name] = value
    (folder / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=rf"model\.json is unreadable: field '{name}'"):
        load_checkpoint(folder)


def test_a_missing_or_unknown_card_field_is_refused_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "sasrec-default"
    save_version(folder, 1, "one")
    card = json.loads((folder / CARD_FILE).read_text())
    (folder / CARD_FILE).write_text(json.dumps({k: v for k, v in card.items() if k != "item_ids"}))
    with pytest.raises(CheckpointError, match="field 'item_ids' is missing"):
        load_checkpoint(folder)
    (folder / CARD_FILE).write_text(json.dumps({**card, "colour": "blue"}))
    with pytest.raises(CheckpointError, match="unknown field 'colour'"):
        load_checkpoint(folder)


def test_the_field_table_covers_the_card() -> None:
    assert set(CARD_FIELDS) == set(ModelCard.__dataclass_fields__)


def test_a_trained_and_saved_card_passes_and_the_shelf_serves_it(trained_state: Path) -> None:
    """The card the trainer writes (training/loop.py, via the app's training path) passes the
    field checks, and its weights their SHA-256."""
    folder = model_folder(trained_state / "models", "synthetic", "sasrec")
    assert (folder / CARD_FILE).is_symlink() and (folder / CURRENT_LINK).is_symlink()
    card = read_card(folder)
    assert len(card.weights_sha256) == 64 and card.metrics["sasrec"]["test"]["n_cases"] > 0
    assert load_checkpoint(folder, dataset="synthetic").card == card
    info = ModelShelf(trained_state / "models", "synthetic", torch.device("cpu")).info("sasrec")
    assert info.ready and info.metrics == card.metrics
