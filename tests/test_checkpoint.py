"""Checkpoints: round trips, and refusal of another format version, dataset or catalog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from db.engine import create_schema
from db.synthetic import seed_database
from recengine.checkpoint import (
    CARD_FILE,
    FORMAT_VERSION,
    CheckpointError,
    ModelCard,
    checkpoint_dir,
    load_checkpoint,
    save_checkpoint,
)
from recengine.models.registry import build_sequence_model
from recengine.models.sasrec import SASRec, SASRecConfig
from recengine.models.sequence import SeqBatch, SequenceModel
from recengine.models.tisasrec import TiSASRec, TiSASRecConfig
from recengine.service import RecService, catalog_fingerprint
from tests.conftest import TEST_WORLD, tiny_settings

SMALL = {"max_len": 4, "d_model": 8, "n_heads": 2, "n_layers": 1, "dropout": 0.0}
SEQS = torch.tensor([[0, 1, 2, 3], [4, 5, 1, 2]])


def save(directory: Path, model: SequenceModel, item_ids: list[int], **card: object) -> Path:
    fields = {
        "model": model.name,
        "model_config": model.config.to_dict(),
        "item_ids": item_ids,
        "data_fingerprint": "data-fp",
        "catalog_fingerprint": "catalog-fp",
        **card,
    }
    return save_checkpoint(directory, model, ModelCard(**fields))  # type: ignore[arg-type]


def edit_card(directory: Path, **changes: object) -> None:
    path = directory / CARD_FILE
    card = json.loads(path.read_text())
    card.update(changes)
    path.write_text(json.dumps(card))


@pytest.mark.parametrize("kind", ["sasrec", "tisasrec"])
def test_round_trip_gives_the_same_model(tmp_path: Path, kind: str) -> None:
    torch.manual_seed(0)
    model = (
        TiSASRec(TiSASRecConfig(n_items=5, **SMALL))
        if kind == "tisasrec"
        else SASRec(SASRecConfig(n_items=5, **SMALL))
    ).eval()
    if isinstance(model, TiSASRec):
        with torch.no_grad():  # non-zero biases, so the round trip has to carry them
            model.distance_bias.normal_()
    save(tmp_path, model, [10, 11, 12, 13, 14], dataset="synthetic")
    loaded = load_checkpoint(tmp_path, dataset="synthetic", catalog_fingerprint="catalog-fp")
    assert type(loaded.model) is type(model)
    assert loaded.card.format_version == FORMAT_VERSION and loaded.card.dataset == "synthetic"
    assert loaded.vocab.index_of(12) == 3
    torch.testing.assert_close(loaded.model.score_last(SEQS)[0], model.score_last(SEQS)[0])


# Models of the one interface besides the SASRec family (which reads no side streams here).
OTHER_MODELS = {
    "din": {"d_model": 8, "max_len": 4, "attention_hidden": (8,), "mlp_hidden": (8,)},
    "gru4rec": {"embedding_dim": 8, "hidden_size": 8, "max_len": 4},
}


@pytest.mark.parametrize("name", list(OTHER_MODELS))
def test_every_sequence_model_round_trips(tmp_path: Path, name: str) -> None:
    torch.manual_seed(0)
    model = build_sequence_model(name, {"n_items": 5, **OTHER_MODELS[name]}).eval()
    save(tmp_path, model, [10, 11, 12, 13, 14], dataset="synthetic")
    loaded = load_checkpoint(tmp_path, dataset="synthetic", catalog_fingerprint="catalog-fp")
    assert type(loaded.model) is type(model) and loaded.card.model == name
    assert loaded.model.config == model.config  # DIN's tuples come back from the JSON lists
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.score(SeqBatch(SEQS)), model.score(SeqBatch(SEQS)))


def test_another_format_version_is_refused_and_says_so(tmp_path: Path) -> None:
    save(tmp_path, SASRec(SASRecConfig(n_items=5, **SMALL)), [1, 2, 3, 4, 5])
    # A newer card may carry fields this code does not know: the version is checked first.
    edit_card(tmp_path, format_version=FORMAT_VERSION + 1, new_field=[1, 2])
    with pytest.raises(CheckpointError, match=rf"format version {FORMAT_VERSION + 1}; this code "):
        load_checkpoint(tmp_path)
    edit_card(tmp_path, format_version=None)  # a card from before versions were written
    with pytest.raises(CheckpointError, match="format version None"):
        load_checkpoint(tmp_path)


def test_another_dataset_or_catalog_is_refused_and_says_which(tmp_path: Path) -> None:
    save(tmp_path, SASRec(SASRecConfig(n_items=5, **SMALL)), [1, 2, 3, 4, 5], dataset="ml-1m")
    with pytest.raises(CheckpointError, match="trained on dataset 'ml-1m', not 'synthetic'"):
        load_checkpoint(tmp_path, dataset="synthetic", catalog_fingerprint="catalog-fp")
    with pytest.raises(CheckpointError, match=r"another catalog.*'catalog-fp'.*'other-fp'"):
        load_checkpoint(tmp_path, dataset="ml-1m", catalog_fingerprint="other-fp")
    assert load_checkpoint(tmp_path, dataset="ml-1m", catalog_fingerprint="catalog-fp")
    # A card written before the dataset field existed is judged by its catalog alone.
    card = json.loads((tmp_path / CARD_FILE).read_text())
    del card["dataset"]
    (tmp_path / CARD_FILE).write_text(json.dumps(card))
    assert load_checkpoint(tmp_path, dataset="synthetic", catalog_fingerprint="catalog-fp")
    with pytest.raises(CheckpointError, match="another catalog"):
        load_checkpoint(tmp_path, dataset="synthetic", catalog_fingerprint="other-fp")


def test_unknown_model_kind_is_refused(tmp_path: Path) -> None:
    save(tmp_path, SASRec(SASRecConfig(n_items=5, **SMALL)), [1, 2, 3, 4, 5])
    edit_card(tmp_path, model="gpt")
    with pytest.raises(CheckpointError, match="is for model 'gpt'"):
        load_checkpoint(tmp_path)


def test_service_falls_back_with_a_notice_on_a_version_mismatch(tmp_path: Path) -> None:
    settings = tiny_settings(tmp_path)
    service = RecService(settings)
    create_schema(service.engine)
    seed_database(service.engine, TEST_WORLD)
    service.ensure_database()
    items = list(service.items.values())
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(n_items=len(items), **SMALL))
    directory = checkpoint_dir(settings.model_dir / "synthetic")
    save(
        directory,
        model,
        [i.id for i in items],
        catalog_fingerprint=catalog_fingerprint(items),
        dataset="synthetic",
    )
    assert service.load_model().ready  # the checkpoint itself is fine
    edit_card(directory, format_version=FORMAT_VERSION + 1)
    status = service.load_model()
    assert not status.ready and f"format version {FORMAT_VERSION + 1}" in status.message
    sequences = service.user_sequences()
    busiest = max(sequences, key=lambda u: len(sequences[u]))
    recs = service.recommend(busiest, k=5)
    assert recs.source == "content" and len(recs.items) == 5
    assert recs.notice and "format version" in recs.notice
    service.engine.dispose()
