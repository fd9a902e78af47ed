"""Session context: the world's context knob, and SASRec with context as an input.

World numbers asserted here were measured on tiny worlds, seeds 1-8, and carry a margin.
"""

from __future__ import annotations

import collections
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from sqlalchemy import func, select

from db.engine import create_schema, make_engine
from db.repository import Repository
from db.schema import Event
from db.synthetic import (
    CONTEXT_REASON,
    WORLD_SIZES,
    World,
    WorldConfig,
    context_categories,
    generate_world,
    write_world,
)
from recengine.context import device_id, time_of_day_id
from recengine.data import CaseSide, NextItemCase
from recengine.models.context_sasrec import ContextSASRec, ContextSASRecConfig
from recengine.models.sasrec import SASRec
from recengine.models.sequence import SeqBatch, case_batch
from recengine.training import TrainConfig, model_scorer, train
from recengine.training.prepare import prepare_data
from recengine.training_data import TrainingData

TINY_CONTEXT = replace(WORLD_SIZES["tiny"], context_effect=0.5)


# --------------------------------------------------------------------------------------------
# The world's context knob
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def context_world() -> World:
    return generate_world(TINY_CONTEXT)


@pytest.fixture(scope="module")
def plain_world() -> World:
    return generate_world(WORLD_SIZES["tiny"])


def _event_digest(world: World) -> str:
    rows = [
        [e["session_id"], e["item_id"], e["kind"], e["reason"], e["cause_event_id"]]
        for e in world.events
    ]
    rows += [[s["user_id"], s["device"], s["time_of_day"]] for s in world.sessions]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def test_knob_off_leaves_the_world_as_before_the_knob(plain_world: World) -> None:
    # Digest of the tiny world's events and sessions made by the generator before
    # context_effect existed (commit 4812b39): the knob off draws nothing extra.
    assert _event_digest(plain_world) == "51217332732a62a4"
    assert CONTEXT_REASON not in {e["reason"] for e in plain_world.events}


def test_knob_changes_only_the_events(context_world: World, plain_world: World) -> None:
    assert context_world.items == plain_world.items
    assert context_world.users == plain_world.users
    assert context_world.trigger_pairs == plain_world.trigger_pairs
    assert _event_digest(context_world) != _event_digest(plain_world)


def _favoured(world: World) -> list[bool]:
    """Per event: is its item in a category its session's context favours?"""
    category = {i["id"]: i["category"] for i in world.items}
    session = {s["id"]: s for s in world.sessions}
    return [
        category[e["item_id"]]
        in context_categories(
            session[e["session_id"]]["device"], session[e["session_id"]]["time_of_day"]
        )
        for e in world.events
    ]


def _morning_evening_distance(world: World) -> float:
    """Total variation distance between the category mix of morning and evening events."""
    category = {i["id"]: i["category"] for i in world.items}
    time_of_day = {s["id"]: s["time_of_day"] for s in world.sessions}
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for e in world.events:
        counts[time_of_day[e["session_id"]]][category[e["item_id"]]] += 1
    morning, evening = counts["morning"], counts["evening"]
    m, n = sum(morning.values()), sum(evening.values())
    return 0.5 * sum(abs(morning[c] / m - evening[c] / n) for c in set(morning) | set(evening))


def test_knob_on_makes_categories_depend_on_context(
    context_world: World, plain_world: World
) -> None:
    on, off = _favoured(context_world), _favoured(plain_world)
    # Measured (seeds 1-8): favoured share 0.30-0.34 off, 0.61-0.65 at 0.5.
    assert sum(on) / len(on) > sum(off) / len(off) + 0.2
    # Measured at seed 7: 0.13 off, 0.39 on (seeds 1-8: off 0.13-0.26, on 0.36-0.42).
    assert _morning_evening_distance(context_world) > _morning_evening_distance(plain_world) + 0.15
    # The ground truth holds: every "context" event is in a category its context favours.
    reasons = [e["reason"] for e in context_world.events]
    assert reasons.count(CONTEXT_REASON) > 0.25 * len(reasons)
    assert all(f for f, r in zip(on, reasons, strict=True) if r == CONTEXT_REASON)


def test_context_categories_and_bad_context() -> None:
    assert context_categories("mobile", "morning") == ("Kitchen", "Beauty", "Phone Accessories")
    assert context_categories("tablet", "evening") == ("Books", "Toys")  # no duplicates
    with pytest.raises(ValueError, match="Unknown session context"):
        context_categories("watch", "morning")
    with pytest.raises(ValueError, match="context_effect"):
        WorldConfig(context_effect=1.5)


def test_user_context_sequences_carry_each_events_session(context_world: World) -> None:
    sequences = context_world.user_context_sequences()
    assert {u: s.items for u, s in sequences.items()} == context_world.user_sequences()
    session = {s["id"]: s for s in context_world.sessions}
    first = min(context_world.events, key=lambda e: (e["ts"], e["id"]))
    owner = session[first["session_id"]]
    seq = sequences[owner["user_id"]]
    assert (seq.items[0], seq.devices[0], seq.times_of_day[0]) == (
        first["item_id"],
        owner["device"],
        owner["time_of_day"],
    )
    for s in sequences.values():
        assert len(s.items) == len(s.devices) == len(s.times_of_day)


def test_a_context_world_is_written_with_its_reasons_and_context(
    tmp_path: Path, context_world: World
) -> None:
    """The schema takes the "context" reason (migration 0003), so a context world is written
    whole, and reads back as the context model trains on it."""
    engine = make_engine(f"sqlite:///{tmp_path / 'ctx.db'}")
    create_schema(engine)
    dataset_id = write_world(engine, context_world)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Event)).scalar() == len(
            context_world.events
        )
        written = conn.execute(
            select(func.count()).select_from(Event).where(Event.reason == CONTEXT_REASON)
        ).scalar()
    assert written == sum(e["reason"] == CONTEXT_REASON for e in context_world.events) > 0
    # On an empty database the rows keep the world's ids.
    events = Repository(engine).user_events(dataset_id)
    expected = context_world.user_context_sequences()
    assert events.sequences == {u: s.items for u, s in expected.items()}
    assert events.devices == {u: s.devices for u, s in expected.items()}
    assert events.times_of_day == {u: s.times_of_day for u, s in expected.items()}
    engine.dispose()


def test_writing_a_world_with_an_unknown_reason_is_refused_clearly(
    tmp_path: Path, context_world: World
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'bad.db'}")
    create_schema(engine)
    events = [dict(e) for e in context_world.events]
    events[0]["reason"] = "whim"
    with pytest.raises(ValueError, match="'whim'"):
        write_world(engine, replace(context_world, events=events))
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Event)).scalar() == 0
    engine.dispose()


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

N_ITEMS = 30


def make_model(seed: int = 0) -> ContextSASRec:
    torch.manual_seed(seed)
    config = ContextSASRecConfig(
        n_items=N_ITEMS, max_len=10, d_model=16, n_heads=2, n_layers=2, dropout=0.0
    )
    return ContextSASRec(config).eval()


def all_position_scores(
    model: ContextSASRec,
    seqs: torch.Tensor,
    devices: torch.Tensor,
    times: torch.Tensor,
    next_devices: torch.Tensor,
    next_times: torch.Tensor,
) -> torch.Tensor:
    """(B, T, n_items + 1) scores of every position, as the loss sees them."""
    hidden = model(seqs, devices, times).hidden
    return model.item_logits(model.context_query(hidden, next_devices, next_times))


def score_last(
    model: ContextSASRec,
    seqs: torch.Tensor,
    devices: torch.Tensor,
    times: torch.Tensor,
    next_devices: torch.Tensor,
    next_times: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores of the item after each row, and the last position's last-layer attention (mean
    over heads), from the ranker's pass."""
    batch = SeqBatch(
        seqs,
        devices=devices,
        times_of_day=times,
        next_devices=next_devices,
        next_times_of_day=next_times,
    )
    with torch.no_grad():
        out = model.score_pass(batch)
    assert out.attentions is not None
    return out.scores, out.attentions[-1][:, :, -1, :].mean(dim=1)


SEQS = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 10, 11, 12]])
DEVICES_ = torch.tensor([[1, 1, 1, 2, 2, 2, 3, 3, 3, 1]])
TIMES = torch.tensor([[1, 1, 2, 2, 3, 3, 4, 4, 1, 1]])
NEXT_DEVICES = torch.tensor([[1, 1, 2, 2, 2, 3, 3, 3, 1, 2]])
NEXT_TIMES = torch.tensor([[1, 2, 2, 3, 3, 4, 4, 1, 1, 2]])


def test_output_shapes_and_interface() -> None:
    model = make_model()
    assert model.name == "context_sasrec" and model.reads == frozenset({"context"})
    assert model.can("item_vectors") and model.can("self_attention")
    assert not model.can("target_attention") and not model.one_pass_occlusion
    out = model(SEQS.repeat(2, 1), DEVICES_.repeat(2, 1), TIMES.repeat(2, 1))
    assert out.hidden.shape == (2, 10, 16)
    assert [w.shape for w in out.attentions] == [(2, 2, 10, 10)] * 2
    args = (SEQS.repeat(2, 1), DEVICES_.repeat(2, 1), TIMES.repeat(2, 1))
    scores, last = score_last(model, *args, torch.tensor([1, 2]), torch.tensor([3, 4]))
    assert scores.shape == (2, N_ITEMS + 1) and last.shape == (2, 10)
    assert torch.all(scores[:, 0] == float("-inf"))
    # score and score_pass agree, and the query dotted with the item vectors is the score.
    batch = SeqBatch(
        args[0],
        devices=args[1],
        times_of_day=args[2],
        next_devices=torch.tensor([1, 2]),
        next_times_of_day=torch.tensor([3, 4]),
    )
    torch.testing.assert_close(model.score(batch), scores)
    dots = model.query(batch) @ model.item_vectors().T
    torch.testing.assert_close(dots[:, 1:], scores[:, 1:])


def test_no_information_flows_from_future_positions() -> None:
    model = make_model()
    before = all_position_scores(model, SEQS, DEVICES_, TIMES, NEXT_DEVICES, NEXT_TIMES)
    changed = [t.clone() for t in (SEQS, DEVICES_, TIMES, NEXT_DEVICES, NEXT_TIMES)]
    changed[0][0, 6:] = torch.tensor([20, 21, 22, 23])
    changed[1][0, 6:] = 2
    changed[2][0, 6:] = 3
    changed[3][0, 6:] = 1
    changed[4][0, 6:] = 2
    after = all_position_scores(model, *changed)
    torch.testing.assert_close(after[:, :6], before[:, :6])
    assert not torch.allclose(after[:, 6:, 1:], before[:, 6:, 1:])
    # A future position's *input* context alone (its item kept) changes nothing earlier either.
    devices = DEVICES_.clone()
    devices[0, 8] = 2
    only_context = all_position_scores(model, SEQS, devices, TIMES, NEXT_DEVICES, NEXT_TIMES)
    torch.testing.assert_close(only_context[:, :8], before[:, :8])
    assert not torch.allclose(only_context[:, 8:, 1:], before[:, 8:, 1:])


def test_the_loss_scores_each_position_with_its_targets_context() -> None:
    model = make_model()
    targets = torch.cat([SEQS[:, 1:], torch.tensor([[13]])], dim=1)
    batch = SeqBatch(
        SEQS,
        targets=targets,
        devices=DEVICES_,
        times_of_day=TIMES,
        next_devices=NEXT_DEVICES,
        next_times_of_day=NEXT_TIMES,
    )
    logits = all_position_scores(model, SEQS, DEVICES_, TIMES, NEXT_DEVICES, NEXT_TIMES)
    expected = torch.nn.functional.cross_entropy(logits[0], targets[0])
    torch.testing.assert_close(model.loss(batch), expected)


def test_left_padding_and_batching_do_not_change_scores() -> None:
    model = make_model()
    items, devices, times = [5, 9, 2, 17], [1, 2, 2, 3], [4, 4, 1, 2]
    nxt = (torch.tensor([3]), torch.tensor([2]))
    s1, a1 = score_last(
        model, torch.tensor([items]), torch.tensor([devices]), torch.tensor([times]), *nxt
    )
    pad = [0] * 6
    s2, a2 = score_last(
        model,
        torch.tensor([pad + items]),
        torch.tensor([pad + devices]),
        torch.tensor([pad + times]),
        *nxt,
    )
    torch.testing.assert_close(s2, s1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a2[:, 6:], a1, rtol=1e-5, atol=1e-6)
    assert torch.all(a2[:, :6] == 0)
    batch, _ = score_last(
        model,
        torch.tensor([pad + items, SEQS[0, :10].tolist()]),
        torch.tensor([pad + devices, DEVICES_[0].tolist()]),
        torch.tensor([pad + times, TIMES[0].tolist()]),
        torch.tensor([3, 1]),
        torch.tensor([2, 1]),
    )
    torch.testing.assert_close(batch[:1], s1, rtol=1e-5, atol=1e-5)
    # Cases with their sides, as the evaluation scores them: the same scores.
    side = CaseSide(
        devices=tuple(devices), times_of_day=tuple(times), next_device=3, next_time_of_day=2
    )
    other = CaseSide(
        devices=tuple(DEVICES_[0].tolist()),
        times_of_day=tuple(TIMES[0].tolist()),
        next_device=1,
        next_time_of_day=1,
    )
    cases = [
        NextItemCase(0, tuple(items), 1, side),
        NextItemCase(1, tuple(SEQS[0].tolist()), 1, other),
    ]
    torch.testing.assert_close(model_scorer(model)(cases), batch, rtol=1e-5, atol=1e-5)


def test_context_changes_scores_and_the_query_adds_its_embeddings() -> None:
    model = make_model()
    args = (SEQS, DEVICES_, TIMES)
    base, _ = score_last(model, *args, torch.tensor([1]), torch.tensor([1]))
    other_device, _ = score_last(model, *args, torch.tensor([2]), torch.tensor([1]))
    other_time, _ = score_last(model, *args, torch.tensor([1]), torch.tensor([4]))
    other_inputs, _ = score_last(
        model, SEQS, torch.full_like(DEVICES_, 3), TIMES, torch.tensor([1]), torch.tensor([1])
    )
    for scores in (other_device, other_time, other_inputs):
        assert not torch.allclose(scores[:, 1:], base[:, 1:])
    # The query is the hidden state plus the two query embeddings, scored by the item table.
    with torch.no_grad():
        hidden = model(*args).hidden[:, -1]
        expected = hidden + model.query_device_emb.weight[2] + model.query_time_emb.weight[1]
        torch.testing.assert_close(other_device[:, 1:], expected @ model.item_table()[1:].T)


def test_with_zero_context_embeddings_it_is_sasrec() -> None:
    """Same seed, same SASRec parameters; with the context tables zeroed, the same scores."""
    context_model = make_model(seed=5)
    torch.manual_seed(5)
    plain = SASRec(context_model.config.sasrec_config()).eval()
    with torch.no_grad():
        for table in (
            context_model.device_emb,
            context_model.time_emb,
            context_model.query_device_emb,
            context_model.query_time_emb,
        ):
            table.weight.zero_()
    ctx, ctx_attention = score_last(
        context_model, SEQS, DEVICES_, TIMES, torch.tensor([2]), torch.tensor([3])
    )
    ref, ref_attention = plain.score_last(SEQS)
    torch.testing.assert_close(ctx, ref)
    torch.testing.assert_close(ctx_attention, ref_attention)


def test_bad_context_inputs_are_refused() -> None:
    model = make_model()
    with pytest.raises(ValueError, match="devices must have shape"):
        model(SEQS, DEVICES_[:, :5], TIMES)
    with pytest.raises(ValueError, match=r"times of day ids must lie in 0\.\.4"):
        model(SEQS, DEVICES_, torch.full_like(TIMES, 5))
    with pytest.raises(ValueError, match=r"devices ids must lie in 0\.\.3"):
        model(SEQS, torch.full_like(DEVICES_, -1), TIMES)
    with pytest.raises(ValueError, match=r"devices ids must lie in 0\.\.3"):
        score_last(model, SEQS, DEVICES_, TIMES, torch.tensor([4]), torch.tensor([1]))
    with pytest.raises(ValueError, match="exceeds max_len"):
        model(*(torch.ones(1, 11, dtype=torch.long),) * 3)
    with pytest.raises(ValueError, match="Unknown device 'watch'"):
        device_id("watch")
    with pytest.raises(ValueError, match="Unknown time of day 'dusk'"):
        time_of_day_id("dusk")
    # A batch without the context it needs is refused, not scored as if it had none.
    with pytest.raises(ValueError, match="needs each event's device and time of day"):
        model.score(SeqBatch(SEQS))
    with pytest.raises(ValueError, match="needs the next step's context"):
        model.score(SeqBatch(SEQS, devices=DEVICES_, times_of_day=TIMES))
    with pytest.raises(ValueError, match="needs the context of every target"):
        model.loss(SeqBatch(SEQS, targets=SEQS, devices=DEVICES_, times_of_day=TIMES))
    with pytest.raises(ValueError, match=r"reads \['context'\], but a history has none"):
        case_batch([[1, 2]], [None], 10, model.reads)
    with pytest.raises(ValueError, match="'devices' must have one value per history item"):
        case_batch([[1, 2]], [CaseSide(devices=(1,), times_of_day=(1, 2))], 10, model.reads)


# --------------------------------------------------------------------------------------------
# Data: split and windows keep the context streams aligned with the items
# --------------------------------------------------------------------------------------------

CONTEXT_MODEL = {"max_len": 4, "d_model": 8, "n_heads": 2, "n_layers": 1}


def context_data(
    sequences: dict[int, list[int]],
    devices: dict[int, list[str]] | None,
    times_of_day: dict[int, list[str]] | None,
    catalog: list[int] | None = None,
) -> TrainingData:
    return TrainingData(
        name="context",
        sequences=sequences,
        catalog_ids=catalog if catalog is not None else list(range(1, 10)),
        catalog_fingerprint="",
        devices=devices,
        times_of_day=times_of_day,
    )


def test_leave_one_out_cuts_the_context_streams_with_the_items() -> None:
    data = context_data(
        {10: [1, 2, 3, 4], 11: [5, 6]},
        {10: ["mobile", "mobile", "desktop", "desktop"], 11: ["tablet", "tablet"]},
        {10: ["evening", "evening", "night", "morning"], 11: ["afternoon", "afternoon"]},
    )
    prepared = prepare_data(data, "context_sasrec", CONTEXT_MODEL)
    assert prepared.train_seqs == [[1, 2], [5, 6]]  # catalog 1..9: model index = item id
    (valid,), (test,) = prepared.valid, prepared.test
    assert (valid.user_id, valid.history, valid.target) == (10, (1, 2), 3)
    assert valid.side == CaseSide(
        devices=(1, 1), times_of_day=(3, 3), next_device=2, next_time_of_day=4
    )
    assert (test.history, test.target) == ((1, 2, 3), 4)
    assert test.side == CaseSide(
        devices=(1, 1, 2), times_of_day=(3, 3, 4), next_device=2, next_time_of_day=1
    )


def test_training_windows_pair_each_target_with_its_context() -> None:
    data = context_data(
        {1: [7, 8, 9, 1, 2]},
        {1: ["mobile", "desktop", "tablet", "mobile", "mobile"]},
        {1: ["night", "evening", "afternoon", "morning", "morning"]},
    )
    w = prepare_data(data, "context_sasrec", CONTEXT_MODEL).windows  # the train part: 7, 8, 9
    assert w.items.tolist() == [[0, 0, 7, 8]] and w.targets.tolist() == [[0, 0, 8, 9]]
    assert w.devices is not None and w.next_devices is not None
    assert w.times_of_day is not None and w.next_times_of_day is not None
    assert w.devices.tolist() == [[0, 0, 1, 2]] and w.next_devices.tolist() == [[0, 0, 2, 3]]
    assert w.times_of_day.tolist() == [[0, 0, 4, 3]]
    assert w.next_times_of_day.tolist() == [[0, 0, 3, 2]]
    # A model that reads no context trains on the same item windows and nothing else.
    plain = prepare_data(data, "sasrec", CONTEXT_MODEL).windows
    assert torch.equal(plain.items, w.items) and plain.devices is None


def test_context_streams_must_be_there_and_line_up(context_world: World) -> None:
    sequences = {10: [1, 2, 3, 4]}
    devices = {10: ["mobile"] * 4}
    times = {10: ["morning"] * 4}
    with pytest.raises(ValueError, match="no device / time of day per event"):
        prepare_data(context_data(sequences, None, None), "context_sasrec")
    with pytest.raises(ValueError, match="devices of user 10 do not line up with the items"):
        prepare_data(context_data(sequences, {10: ["mobile"] * 3}, times), "context_sasrec")
    with pytest.raises(ValueError, match="Unknown time of day 'noon'"):
        prepare_data(context_data(sequences, devices, {10: ["noon"] * 4}), "context_sasrec")
    # Items the catalog lacks are refused.
    by_user = context_world.user_context_sequences()
    missing = next(iter(by_user.values())).items[0]
    catalog = [i["id"] for i in context_world.items if i["id"] != missing]
    world_data = context_data(
        {u: s.items for u, s in by_user.items()},
        {u: s.devices for u, s in by_user.items()},
        {u: s.times_of_day for u, s in by_user.items()},
        catalog,
    )
    with pytest.raises(ValueError, match="not in the catalog"):
        prepare_data(world_data, "context_sasrec")


# --------------------------------------------------------------------------------------------
# Learning: where context matters, the context model wins
# --------------------------------------------------------------------------------------------


def world_data(world: World) -> TrainingData:
    """The world's events with their sessions' device and time of day."""
    by_user = world.user_context_sequences()
    return TrainingData(
        name="context world",
        sequences={u: s.items for u, s in by_user.items()},
        catalog_ids=[i["id"] for i in world.items],
        catalog_fingerprint="",
        devices={u: s.devices for u, s in by_user.items()},
        times_of_day={u: s.times_of_day for u, s in by_user.items()},
    )


def test_context_model_beats_sasrec_where_context_matters() -> None:
    world = generate_world(replace(WORLD_SIZES["tiny"], n_users=200, seed=7, context_effect=0.8))
    data = world_data(world)
    config = {"d_model": 32, "max_len": 30, "n_layers": 1}
    cfg = TrainConfig(
        max_epochs=20, eval_every=20, lr=5e-3, time_budget_s=1e6, seed=7, device="cpu"
    )
    # The same data, split, windows, batch order and seed: only the context differs.
    plain = train("sasrec", data, model_config=config, train_config=cfg)
    context = train("context_sasrec", data, model_config=config, train_config=cfg)
    assert type(plain.model) is SASRec and isinstance(context.model, ContextSASRec)
    plain_valid = plain.card.metrics["sasrec"]["valid"]
    context_valid = context.card.metrics["context_sasrec"]["valid"]
    # Measured (200 validation cases): HR@10 0.27 -> 0.35, NDCG@10 0.155 -> 0.177 (what the
    # removed train_context_sasrec gave too); over seeds 1-4 (world and training) the context
    # model led by 0.07-0.14 HR@10.
    assert context_valid["hr@10"] > plain_valid["hr@10"] + 0.04
    assert context_valid["ndcg@10"] > plain_valid["ndcg@10"]
