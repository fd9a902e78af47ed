"""DistributedDataParallel training: two real CPU processes (torchrun, gloo) against one.

The two-process run goes through the real entry (``torchrun -m recengine.distributed``) on a
database holding the tiny test world, and is compared with the same training in this process
(``recengine.training.train``): SASRec, and GRU4Rec to show that every model of the one training
loop trains the same way under DDP.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from db.engine import create_schema
from recengine import distributed
from recengine.checkpoint import load_checkpoint
from recengine.distributed import TORCHRUN_ENV, DDPTeam, main, process_group
from recengine.service import RecService
from recengine.training import TrainConfig, train
from recengine.zoo import get_model
from tests.conftest import TEST_WORLD, tiny_settings

ROOT = Path(__file__).resolve().parents[1]
# Dropout off: then the two runs do the same arithmetic in another summation order (per-rank
# partial sums, then the all-reduce), so they may differ only by float rounding. With dropout
# on, each rank draws its own masks and the runs would differ by training noise instead.
MODEL = {"d_model": 16, "max_len": 20, "n_layers": 1, "n_heads": 2, "dropout": 0.0}
MODELS = {
    "sasrec": MODEL,
    "gru4rec": {"embedding_dim": 16, "hidden_size": 16, "max_len": 20, "dropout": 0.0},
}
# One evaluation (at the end): the best epoch cannot flip on a rounding difference.
TRAIN = {"max_epochs": 6, "batch_size": 64, "eval_every": 6, "patience": 10, "time_budget_s": 1e6}


def make_team(rank: int, world_size: int) -> DDPTeam:
    team = object.__new__(DDPTeam)  # the sharding needs no process group
    team.rank, team.world_size = rank, world_size
    return team


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("batch_rows", [1, 2, 7, 64])
def test_shards_cover_the_batch_once_and_weight_the_loss_to_its_mean(
    world_size: int, batch_rows: int
) -> None:
    """What makes DDP's averaged gradient the single-process one: the weighted per-rank mean
    losses average to the batch's mean loss over all target positions, for any row split."""
    gen = torch.Generator().manual_seed(batch_rows)
    n_windows, width = 100, 12
    lengths = torch.randint(1, width + 1, (n_windows,), generator=gen)
    positions = torch.arange(width)
    targets = torch.where(positions >= width - lengths[:, None], 5, 0)  # left-padded targets
    per_position = torch.rand(n_windows, width, generator=gen, dtype=torch.float64)
    idx = torch.randperm(n_windows, generator=gen)[:batch_rows]

    def mean_loss(rows: torch.Tensor) -> torch.Tensor:
        return per_position[rows][targets[rows] != 0].mean()

    shards = [make_team(r, world_size).shard(idx, targets) for r in range(world_size)]
    real = [rows for rows, weight in shards if weight > 0]
    assert sorted(torch.cat(real).tolist()) == sorted(idx.tolist())  # every row exactly once
    averaged = sum(weight * mean_loss(rows) for rows, weight in shards) / world_size
    torch.testing.assert_close(averaged, mean_loss(idx), rtol=1e-12, atol=0.0)


def test_buffer_sync_is_turned_off_under_either_torch_name() -> None:
    """torch 2.13 renamed DDP's ``broadcast_buffers``; the GPU image we ran on had torch 2.11."""

    class Before213:
        def __init__(self, module: object, broadcast_buffers: bool = True) -> None: ...

    class From213:
        def __init__(
            self, module: object, broadcast_buffers: bool | None = None,
            forward_sync_buffers: bool | None = None,
        ) -> None: ...  # fmt: skip

    assert distributed.buffer_sync_off(Before213) == {"broadcast_buffers": False}
    assert distributed.buffer_sync_off(From213) == {"forward_sync_buffers": False}
    installed = distributed.buffer_sync_off(torch.nn.parallel.DistributedDataParallel)
    assert installed.keys() <= set(
        inspect.signature(torch.nn.parallel.DistributedDataParallel.__init__).parameters
    )


def test_entry_says_how_to_launch_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="torchrun --standalone --nproc_per_node"), process_group():
        pass
    assert main(["--train-config", '{"max_epochs": 1}']) == 2
    assert "launch with `torchrun" in capsys.readouterr().err
    assert main(["--train-config", '{"epochs": 1}']) == 2
    assert "Unknown TrainConfig fields ['epochs']" in capsys.readouterr().err


@pytest.fixture
def seeded_state(tmp_path: Path) -> Path:
    """A state folder (SQLite database) holding the tiny test world, to copy per launch."""
    from db.synthetic import seed_database

    template = tmp_path / "template"
    service = RecService(tiny_settings(template))
    create_schema(service.engine)
    seed_database(service.engine, TEST_WORLD)
    service.engine.dispose()
    return template


@pytest.mark.parametrize("name", list(MODELS))
def test_two_cpu_processes_match_one(seeded_state: Path, name: str) -> None:
    model_config = MODELS[name]

    def launch(attempt: int) -> tuple[Path, subprocess.CompletedProcess[str]]:
        # Each attempt starts from its own copy of the seeded state, so what the checks below
        # read (checkpoint, snapshot, recorded runs) comes from one launch only.
        state = seeded_state.parent / f"attempt-{attempt}"
        shutil.copytree(seeded_state, state)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECDEMO_")}
        env.update(
            RECDEMO_STATE_DIR=str(state),
            RECDEMO_WORLD_SIZE="tiny",
            RECDEMO_SEED="7",
            RECDEMO_DEVICE="cpu",
            OMP_NUM_THREADS="1",  # two processes on a small machine: no thread oversubscription
            PYTHONFAULTHANDLER="1",  # a rank that aborts prints where (Python side)
        )
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",  # rendezvous on a free localhost port
            "--nproc_per_node=2",
            "-m",
            "recengine.distributed",
            "--model",
            name,
            "--model-config",
            json.dumps(model_config),
            "--train-config",
            json.dumps(TRAIN),
            "--snapshot",
            str(state / "ddp-snapshot.pt"),
        ]
        run = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False
        )
        return state, run

    state, run = launch(1)
    if run.returncode != 0:
        # Rare 2-process launches on a busy machine fail in torch's own start-up (rendezvous)
        # or teardown (a rank aborting at exit); seen about once in 15 starts (start-up, on an
        # older setup) and once in ~240 (teardown, here; the ranks now leave with os._exit, which
        # skips the teardown that aborted; 20 launches since without a failure are too few to
        # prove it gone). One more launch must succeed; the failure is reported as a warning so
        # a CI log keeps it.
        first = run.stdout[-2000:] + run.stderr[-3000:]
        warnings.warn(f"first 2-process launch failed, retried:\n{first}", stacklevel=1)
        state, run = launch(2)
        assert run.returncode == 0, (
            first + "\n--- retry ---\n" + run.stdout[-3000:] + run.stderr[-3000:]
        )
    assert run.stdout.count("epoch 6/6") == 1  # progress is printed by rank 0 only
    snapshot = state / "ddp-snapshot.pt"

    # The same training in this process: the model's own training defaults (as the torchrun
    # entry takes them from the zoo), TRAIN's changes, the settings' seed and device.
    service = RecService(tiny_settings(state))
    data = service.training_data()
    defaults = get_model(name).default_config()["train"]
    config = TrainConfig(**{**defaults, **TRAIN, "seed": 7, "device": "cpu"})
    single = train(name, data, model_config=model_config, train_config=config)

    # Rank 0 saved the checkpoint where the app looks, and recorded the run.
    ddp = load_checkpoint(service.checkpoint_dir(name))
    assert ddp.card.model == name and ddp.card.dataset == "synthetic"
    assert service.model_status(name).ready
    training = ddp.card.training
    assert training["optimizer"] == config.optimizer  # the model's training defaults
    assert training["clip_grad_norm"] == config.clip_grad_norm
    assert training["world_size"] == 2 and training["epochs_run"] == 6
    digests = training["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]  # both ranks ended bit-identical
    assert digests[0] == distributed.weights_digest(ddp.model)  # ... and that is what was saved
    runs = service.repo.model_runs(service.dataset.id)
    assert len(runs) == 1 and runs[0].timings["world_size"] == 2
    assert runs[0].model_kind == name

    # Rounding-only differences: weights within 1e-3 (6 epochs measured ~4e-5), validation
    # and test NDCG@10 within 0.01 (one of the 200 cases moving a rank or two).
    for key, tensor in single.model.state_dict().items():
        torch.testing.assert_close(ddp.model.state_dict()[key], tensor, rtol=0, atol=1e-3)
    for split in ("valid", "test"):
        ddp_ndcg = ddp.card.metrics[name][split]["ndcg@10"]
        assert ddp_ndcg == pytest.approx(single.card.metrics[name][split]["ndcg@10"], abs=0.01)
    assert training["best_epoch"] == single.card.training["best_epoch"]

    # Rank 0 wrote the snapshot, with both ranks' RNG states; one process may not resume it.
    saved = torch.load(snapshot, weights_only=True)
    assert saved["epoch"] == 6 and saved["identity"]["world_size"] == 2
    assert len(saved["rng_states"]) == 2
    assert not torch.equal(saved["rng_states"][0]["cpu"], saved["rng_states"][1]["cpu"])
    with pytest.raises(ValueError, match="comes from 2 process"):
        train(
            name,
            data,
            model_config=model_config,
            train_config=config,
            snapshot_path=snapshot,
            resume=True,
        )
    service.engine.dispose()
