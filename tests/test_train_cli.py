"""``python -m recengine train --model …``: runs recorded with metrics, JSON lines for data files,
clear errors for bad names. A sequence model on a database dataset trains the app's way (its
checkpoint where the app looks, its blend tuned, the run in ``model_runs``) and a service that is
already running serves it without a restart. In-process (``main(argv)``) on the tiny world, tiny
configs."""

from __future__ import annotations

import gzip
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from db.engine import create_schema, make_engine
from db.repository import Repository
from db.synthetic import seed_database
from recengine.blend import BLEND_FILE, BUCKET_NAMES, BlendConfig, save_blend_config
from recengine.checkpoint import WEIGHTS_FILE, load_checkpoint
from recengine.cli import main
from recengine.experiment import SNAPSHOT_FILE
from recengine.models.din import DIN
from recengine.models.gru4rec import GRU4Rec
from recengine.models.registry import build_sequence_model
from recengine.models.sequence import TIMES
from recengine.models.tisasrec import TiSASRec
from recengine.service import DEFAULT_MODEL_CONFIG, RecService, catalog_fingerprint
from recengine.training import TrainConfig
from recengine.zoo import APP_SASREC_MODEL, ZOO
from tests.conftest import TEST_WORLD, tiny_settings

TINY_SASREC = ["--set", "d_model=16", "--set", "max_len=20"]
TINY_GRU4REC = ["--set", "embedding_dim=8", "--set", "hidden_size=8", "--set", "max_len=20"]
TINY_DIN = ["--set", "d_model=8", "--set", "max_len=20", "--set", "n_negatives=10"]
TINY_DIN += ["--set", "attention_hidden=[8]", "--set", "mlp_hidden=[8]"]


@pytest.fixture(scope="module")
def seeded_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny world in a database, no model trained (so no run recorded) yet."""
    state = tmp_path_factory.mktemp("train-cli-state")
    service = RecService(tiny_settings(state))
    create_schema(service.engine)
    seed_database(service.engine, TEST_WORLD)
    service.engine.dispose()
    return state


@pytest.fixture
def env(seeded_state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    state_dir = tmp_path / "state"
    shutil.copytree(seeded_state, state_dir)
    monkeypatch.setenv("RECDEMO_STATE_DIR", str(state_dir))
    monkeypatch.setenv("RECDEMO_WORLD_SIZE", "tiny")
    monkeypatch.setenv("RECDEMO_DEVICE", "cpu")
    for name in ("RECDEMO_DATABASE_URL", "RECDEMO_MODEL_DIR", "RECDEMO_DATASET", "RECDEMO_SEED"):
        monkeypatch.delenv(name, raising=False)
    return state_dir


def runs(state_dir: Path, dataset: str = "synthetic") -> list:
    engine = make_engine(f"sqlite:///{state_dir / 'app.db'}")
    try:
        repo = Repository(engine)
        return repo.model_runs(repo.dataset_by_name(dataset).id)
    finally:
        engine.dispose()


def the_run(state_dir: Path, kind: str, dataset: str = "synthetic"):  # type: ignore[no-untyped-def]
    [run] = [r for r in runs(state_dir, dataset) if r.model_kind == kind]
    return run


def test_popularity_run_is_recorded_with_full_metrics(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--model", "popularity"]) == 0
    out = capsys.readouterr().out
    run = the_run(env, "popularity")
    service = RecService(tiny_settings(env))
    sequences = service.user_sequences()
    service.engine.dispose()
    # One valid and one test case per user with at least 3 events.
    n_cases = sum(len(s) >= 3 for s in sequences.values())
    assert run.metrics["valid"]["n_cases"] == run.metrics["test"]["n_cases"] == n_cases
    # The Popularity model and the evaluation's popularity scorer count the same training
    # events: two implementations, one ranking, so every test metric agrees.
    for key in ("hr@10", "ndcg@10", "mrr@20", "coverage@20", "long_tail_share@20"):
        assert run.metrics["test"][key] == pytest.approx(run.metrics["popularity_test"][key])
    assert 0 < run.metrics["test"]["hr@20"] <= 1
    assert (
        run.metrics["test"]["hr@5"] <= run.metrics["test"]["hr@10"] <= run.metrics["test"]["hr@20"]
    )
    assert set(run.metrics["test_by_target"]) <= {"head", "tail"}
    assert run.config == {"model": {"half_life": None}}
    assert run.checkpoint_path == ""
    [row] = [line.split() for line in out.splitlines() if line.startswith("ndcg@10 ")]
    assert float(row[2]) == pytest.approx(run.metrics["test"]["ndcg@10"], abs=5e-5)  # test column
    assert f"Recorded as model run {run.id}" in out


def test_gru4rec_takes_the_knobs_and_early_stops(env: Path) -> None:
    argv = ["train", "--model", "gru4rec", "--max-epochs", "2", "--seed", "3", *TINY_GRU4REC]
    assert main(argv) == 0
    run = the_run(env, "gru4rec")
    model, train = run.config["model"], run.config["train"]
    assert (train["max_epochs"], train["seed"], model["embedding_dim"], model["max_len"]) == (
        2,
        3,
        8,
        20,
    )
    # GRU4Rec's own training defaults from the zoo (Adam, no clipping), the settings' device.
    assert (train["optimizer"], train["clip_grad_norm"], train["device"]) == ("adam", 0.0, "cpu")
    assert run.timings["epochs_run"] == 2 and run.timings["best_epoch"] in (1, 2)
    assert run.timings["stop_reason"] in ("max_epochs", "patience")
    assert 0 <= run.metrics["valid"]["ndcg@10"] <= 1
    assert run.checkpoint_path == str(env / "models" / "synthetic" / "gru4rec-default")


def test_a_model_trained_from_the_cli_is_served_by_a_running_service(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shelf rereads the models folder: a service made before the run lists the new model
    as ready after it and recommends with it, without a restart."""
    service = RecService(tiny_settings(env))
    service.ensure_database()
    try:
        before = {m.name: m for m in service.models()}
        assert not before["gru4rec"].ready and not before["gru4rec"].trained
        assert not before["din"].ready
        sequences = service.user_sequences()
        user = max(sequences, key=lambda u: len(sequences[u]))

        assert main(["train", "--model", "gru4rec", "--max-epochs", "1", *TINY_GRU4REC]) == 0
        out = capsys.readouterr().out
        assert "The app serves it from the next request" in out
        assert f"Recorded in model_runs of {service.database_location}" in out

        after = {m.name: m for m in service.models()}
        info = after["gru4rec"]
        assert info.ready and info.trained, info.message
        assert info.metrics["gru4rec"]["test"]["n_cases"] > 0  # the card's metrics
        assert info.training["epochs_run"] == 1
        assert service.models()[0].name == "gru4rec"  # the trained one is listed first
        assert service.model_status("gru4rec") == info
        recs = service.recommend(user, k=5, model="gru4rec")
        assert recs.model_name == "gru4rec" and len(recs.items) == 5
        assert recs.notice is None  # not the "unavailable" fallback
        # The model ranked: its window is the history shown and κ is its tuned one (on the tiny
        # world content often wins, so the tuned κ may hand the whole list to content).
        assert recs.kappa is not None and recs.history
        assert not {r.item.id for r in recs.items} & set(sequences[user])
        the_run(env, "gru4rec")  # one recorded run
        # With a finite κ the model's scores shape the list.
        card = service.shelf.get("gru4rec").loaded.card
        fixed = BlendConfig({b: 2.0 for b in BUCKET_NAMES}, data_fingerprint=card.data_fingerprint)
        save_blend_config(service.checkpoint_dir("gru4rec"), fixed)
        assert service.load_model("gru4rec").ready
        recs = service.recommend(user, k=5, model="gru4rec")
        assert recs.weight > 0 and recs.model.startswith("gru4rec:")

        # DIN is accepted the same way: trained, recorded, served by the same service.
        assert main(["train", "--model", "din", "--max-epochs", "1", *TINY_DIN]) == 0
        din = service.model_status("din")
        assert din.ready, din.message
        loaded = load_checkpoint(Path(the_run(env, "din").checkpoint_path))
        assert isinstance(loaded.model, DIN)
        assert loaded.model.config.attention_hidden == (8,)
        recs = service.recommend(user, k=5, model="din")
        assert recs.model_name == "din" and len(recs.items) == 5
        assert recs.notice is None and recs.kappa is not None
        # No SASRec trained: the default is the first usable model in the zoo's order.
        assert service.default_model() == "din"
        assert service.recommend(user, k=5).model_name == "din"
    finally:
        service.engine.dispose()


def test_sasrec_run_writes_a_checkpoint_the_app_loads(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "train",
        "--model",
        "sasrec",
        "--max-epochs",
        "2",
        "--time-budget-s",
        "60",
        *TINY_SASREC,
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    run = the_run(env, "sasrec")
    ckpt = env / "models" / "synthetic" / "sasrec-default"
    assert run.checkpoint_path == str(ckpt)
    assert f"Checkpoint: {ckpt}" in out and "Test HR@10: sasrec " in out
    service = RecService(tiny_settings(env))
    service.ensure_database()
    expected = catalog_fingerprint(list(service.items.values()))
    loaded = load_checkpoint(ckpt, dataset="synthetic", catalog_fingerprint=expected)
    assert loaded.card.dataset == "synthetic"
    assert loaded.card.training["max_epochs"] == 2 and loaded.card.model_config["d_model"] == 16
    # The card's metrics (evaluate_cases) and the run's (evaluate_report) rank the same cases
    # with the same model: the same NDCG@10 to the card's 4 decimals.
    card_test = loaded.card.metrics["sasrec"]["test"]
    assert run.metrics["test"]["ndcg@10"] == pytest.approx(card_test["ndcg@10"], abs=5e-5)
    assert run.metrics["test"]["n_cases"] == card_test["n_cases"]
    # Trained the app's way: the blend's κ tuned on validation data beside the checkpoint.
    assert (ckpt / BLEND_FILE).is_file()
    status = service.load_model()
    assert status.ready and status.name == "sasrec"
    assert status.blend_note.startswith("κ tuned on validation data")
    service.engine.dispose()


def test_resume_of_a_finished_sasrec_run_gives_the_same_model(env: Path) -> None:
    argv = ["train", "--model", "sasrec", "--max-epochs", "2", *TINY_SASREC]
    assert main(argv) == 0
    weights = env / "models" / "synthetic" / "sasrec-default" / WEIGHTS_FILE
    first = torch.load(weights, weights_only=True)
    assert (weights.parent / SNAPSHOT_FILE).is_file()
    assert main([*argv, "--resume"]) == 0
    again = torch.load(weights, weights_only=True)
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    old, new = sorted((r for r in runs(env) if r.model_kind == "sasrec"), key=lambda r: r.id)
    assert new.metrics["test"] == old.metrics["test"]
    card = load_checkpoint(weights.parent).card
    assert card.training["resumed_from_epoch"] == 2  # continued from the snapshot, not retrained


def test_tisasrec_trains_with_event_times(env: Path) -> None:
    assert main(["train", "--model", "tisasrec", "--max-epochs", "1", *TINY_SASREC]) == 0
    run = the_run(env, "tisasrec")
    loaded = load_checkpoint(Path(run.checkpoint_path))
    assert isinstance(loaded.model, TiSASRec)
    assert TIMES in loaded.model.reads  # trained (and served) with each event's time
    assert loaded.model.time_bias.abs().sum() > 0  # the time biases were trained
    card_test = loaded.card.metrics["tisasrec"]["test"]
    assert run.metrics["test"]["ndcg@10"] == pytest.approx(card_test["ndcg@10"], abs=5e-5)


def test_the_app_model_path_still_trains_without_model(env: Path) -> None:
    assert main(["train", "--max-epochs", "1"]) == 0
    run = the_run(env, "sasrec")
    assert run.config["train"]["max_epochs"] == 1
    # The run is recorded as every run of the app's path: the full evaluation report.
    assert run.metrics["test"]["n_cases"] > 0 and "popularity_test" in run.metrics
    assert run.checkpoint_path == str(env / "models" / "synthetic" / "sasrec-default")
    card = load_checkpoint(Path(run.checkpoint_path)).card
    assert card.training["max_epochs"] == 1
    assert card.metrics["sasrec"]["test"]["n_cases"] == run.metrics["test"]["n_cases"]


# A hand-checked 'user item' file: popularity's metrics are worked out in the test below.
HAND_FILE = "1 1\n1 2\n1 3\n1 4\n2 1\n2 2\n2 5\n3 2\n3 1\n3 3\n4 1\n4 6\n"


def test_data_file_runs_are_appended_as_json_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECDEMO_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("RECDEMO_DATABASE_URL", raising=False)
    monkeypatch.delenv("RECDEMO_MODEL_DIR", raising=False)
    data = tmp_path / "hand.txt.gz"
    with gzip.open(data, "wt") as f:
        f.write(HAND_FILE)
    log = tmp_path / "runs.jsonl"
    argv = ["train", "--model", "popularity", "--data-file", str(data), "--runs-json", str(log)]
    assert main(argv) == 0
    assert main(argv) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 2
    record = lines[0]
    assert record["model_kind"] == "popularity" and record["data_file"] == str(data)
    assert (record["n_users"], record["n_items"], record["n_events"]) == (4, 6, 12)
    # Training counts: item 1 x3, item 2 x2, item 6 x1, items 3-5 never; seen items removed,
    # ties count against the target.
    # valid: u1 [1,2]->3 rank 3 (6 above, 4 and 5 tied); u2 [1]->2 rank 0; u3 [2]->1 rank 0.
    # test:  u1 [1,2,3]->4 rank 2 (6 above, 5 tied); u2 [1,2]->5 rank 3; u3 [2,1]->3 rank 3.
    valid, test = record["metrics"]["valid"], record["metrics"]["test"]
    assert valid["ndcg@10"] == pytest.approx((1 / math.log2(5) + 2) / 3)
    assert valid["mrr@10"] == pytest.approx((1 / 4 + 2) / 3)
    assert test["ndcg@10"] == pytest.approx((1 / math.log2(4) + 2 / math.log2(5)) / 3)
    assert test["mrr@10"] == pytest.approx((1 / 3 + 2 / 4) / 3)
    assert test["hr@5"] == 1.0
    assert test["coverage@20"] == pytest.approx(4 / 6)  # items 3, 4, 5, 6 recommended
    # Without --runs-json: <state dir>/model_runs.jsonl; and no database is made for a file.
    plain = tmp_path / "hand.txt"
    plain.write_text(HAND_FILE)
    assert main(["train", "--model", "itemknn", "--data-file", str(plain)]) == 0
    [default] = (tmp_path / "state" / "model_runs.jsonl").read_text().splitlines()
    assert json.loads(default)["model_kind"] == "itemknn"
    assert not (tmp_path / "state" / "app.db").exists()


def test_a_sequence_model_on_a_data_file_is_saved_beside_the_files_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECDEMO_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("RECDEMO_DEVICE", "cpu")
    for name in ("RECDEMO_DATABASE_URL", "RECDEMO_MODEL_DIR"):
        monkeypatch.delenv(name, raising=False)
    data = tmp_path / "hand.txt.gz"
    with gzip.open(data, "wt") as f:
        f.write(HAND_FILE)
    assert main(["train", "--model", "gru4rec", "--data-file", str(data), *TINY_GRU4REC]) == 0
    folder = tmp_path / "state" / "models" / "file-hand" / "gru4rec-default"
    loaded = load_checkpoint(folder)
    assert isinstance(loaded.model, GRU4Rec) and loaded.card.item_ids == [1, 2, 3, 4, 5, 6]
    assert (folder / SNAPSHOT_FILE).is_file()  # resumable
    [line] = (tmp_path / "state" / "model_runs.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["model_kind"] == "gru4rec" and record["data_file"] == str(data)
    assert record["checkpoint_path"] == str(folder)
    assert record["metrics"]["test"]["n_cases"] == 3  # users with 3 or more events
    assert not (tmp_path / "state" / "app.db").exists()  # no database for a file


def test_rating_model_on_imported_ratings(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "ml"
    folder.mkdir()
    (folder / "movies.dat").write_text(
        "".join(f"{m}::Film {m} (1999)::Drama\n" for m in range(1, 11)), encoding="latin-1"
    )
    ratings = [
        f"{u}::{1 + (u * 3 + k) % 10}::{1 + (u + k) % 5}::{978300000 + 60 * k}\n"
        for u in range(1, 13)
        for k in range(6)
    ]
    (folder / "ratings.dat").write_text("".join(ratings), encoding="latin-1")
    assert main(["db", "import", "movielens", str(folder), "--name", "rated"]) == 0
    argv = ["train", "--model", "mf_biased", "--dataset", "rated", "--max-epochs", "3"]
    assert main([*argv, "--set", "factors=4"]) == 0
    assert "rmse" in capsys.readouterr().out
    run = the_run(env, "mf_biased", dataset="rated")
    assert run.config["model"]["max_epochs"] == 3 and run.timings["epochs_run"] <= 3
    for split in ("valid", "test"):
        rating = run.metrics["rating"][split]
        assert 0 < rating["mae"] <= rating["rmse"] <= 4  # stars 1..5
        assert run.metrics[split]["n_cases"] == 12


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "nope"], "Unknown model 'nope'; choose one of: sasrec, sasrec_readout,"),
        (["--model", "popularity", "--dataset", "nope"], "choose one of: synthetic"),
        (["--model", "mf_biased"], "mf_biased needs explicit ratings"),
        (["--model", "popularity", "--resume"], "--resume is for the sequence models, not for"),
        (["--model", "gru4rec", "--set", "width=3"], "gru4rec has no setting 'width'"),
        (["--model", "gru4rec", "--set", "width"], "--set expects KEY=VALUE"),
        (["--model", "sasrec", "--max-epochs", "0"], "--max-epochs must be at least 1"),
        (["--resume"], "--resume needs --model"),
        (["--model", "popularity", "--data-file", "{tmp}/missing.txt"], "No data file"),
        (["--model", "popularity", "--data-file", "{tmp}/bad.txt"], "bad.txt:2: expected"),
        (["--model", "content_tfidf", "--data-file", "{tmp}/good.txt"], "needs item content"),
        # A 'user item' file has no event times and no session context.
        (["--model", "tisasrec", "--data-file", "{tmp}/good.txt"], "has no event times"),
        (["--model", "context_sasrec", "--data-file", "{tmp}/good.txt"], "no device / time of"),
    ],
)
def test_bad_input_fails_clearly_and_records_nothing(
    env: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    write(tmp_path / "bad.txt", "1 1\n1 x\n")
    write(tmp_path / "good.txt", HAND_FILE)
    before = len(runs(env))
    assert main(["train", *[a.replace("{tmp}", str(tmp_path)) for a in argv]]) == 2
    assert message in capsys.readouterr().err
    assert len(runs(env)) == before
    assert not (env / "model_runs.jsonl").exists()


def test_help_lists_every_model(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "one of: " + ", ".join(ZOO) in help_text


def test_zoo_defaults_build_and_match_the_app() -> None:
    assert APP_SASREC_MODEL == DEFAULT_MODEL_CONFIG
    for entry in ZOO.values():
        config = entry.default_config()
        if entry.kind == "sequence":
            # Trained by recengine.training: a model config and a TrainConfig, both valid.
            assert entry.build is None and set(config) == {"model", "train"}
            assert isinstance(entry.train_config(config), TrainConfig)
            model = build_sequence_model(entry.name, {**config["model"], "n_items": 12})
            assert model.name == entry.name
        else:
            assert entry.build is not None
            entry.build(12, config)  # the default config is valid for its class
