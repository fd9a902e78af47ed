"""Context that works: the context-aware model, served by the app, reads the session's device and
time of day; the other models say they record it but do not use it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db.engine import create_schema
from db.schema import Event, Session
from db.synthetic import WORLD_SIZES, context_categories, seed_database
from recengine.service import RecService
from recengine.training import TrainConfig
from tests.conftest import tiny_settings, use_fixed_kappa

# The tiny catalog with a strong planted context effect: half of the non-trigger steps pick from
# the categories the session's device and time of day favour.
CONTEXT_WORLD = replace(WORLD_SIZES["tiny"], n_users=200, seed=11, context_effect=0.5)
SMALL = {"d_model": 32, "max_len": 30, "dropout": 0.2}
TRAIN = TrainConfig(max_epochs=40, eval_every=4, patience=3, time_budget_s=600, seed=7)
MORNING_ON_DESKTOP = ("desktop", "morning")
NIGHT_ON_MOBILE = ("mobile", "night")


@pytest.fixture(scope="module")
def context_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecService]:
    state = tmp_path_factory.mktemp("context-world")
    service = RecService(tiny_settings(Path(state)))
    create_schema(service.engine)
    seed_database(service.engine, CONTEXT_WORLD)
    service.ensure_database()
    for name in ("sasrec", "context_sasrec"):
        service.train_model(name, train_config=TRAIN, model_config=SMALL)
        # Attention alone from the first event, so the list is the model's own ranking.
        use_fixed_kappa(service, 0.0, name)
    yield service
    service.engine.dispose()


def context_driven_users(service: RecService, n: int) -> list[int]:
    """The users with the most events the world drew because of their session's context."""
    stmt = (
        select(Session.user_id, func.count(Event.id))
        .join(Session, Session.id == Event.session_id)
        .where(Event.reason == "context")
        .group_by(Session.user_id)
        .order_by(func.count(Event.id).desc(), Session.user_id)
        .limit(n)
    )
    with service.engine.connect() as conn:
        users = [int(user) for user, _ in conn.execute(stmt)]
    assert users, "the world planted no context events"
    return users


def most_context_driven_user(service: RecService) -> int:
    return context_driven_users(service, 1)[0]


def favoured_share(service: RecService, item_ids: list[int], context: tuple[str, str]) -> float:
    favoured = set(context_categories(*context))
    return sum(service.items[i].category in favoured for i in item_ids) / len(item_ids)


def test_device_and_time_of_day_change_the_context_models_list(
    context_service: RecService,
) -> None:
    user = most_context_driven_user(context_service)
    morning = context_service.recommend(
        user, 10, model="context_sasrec", context=MORNING_ON_DESKTOP
    )
    night = context_service.recommend(user, 10, model="context_sasrec", context=NIGHT_ON_MOBILE)
    assert morning.context_used and night.context_used
    assert "this list is for desktop, morning" in morning.context_note
    assert [r.item.id for r in morning.items] != [r.item.id for r in night.items]


def test_each_context_pulls_its_own_categories_up(context_service: RecService) -> None:
    """Over the most context-driven users, a morning-on-desktop list holds more of what mornings
    and desktops favour (Kitchen, Beauty, laptop accessories) than a night-on-mobile list, and
    the other way round."""
    shares = {MORNING_ON_DESKTOP: [0.0, 0.0], NIGHT_ON_MOBILE: [0.0, 0.0]}
    for user in context_driven_users(context_service, 20):
        lists = {
            context: [
                r.item.id
                for r in context_service.recommend(
                    user, 10, model="context_sasrec", context=context
                ).items
            ]
            for context in shares
        }
        for context, totals in shares.items():
            totals[0] += favoured_share(context_service, lists[context], context)
            other = NIGHT_ON_MOBILE if context == MORNING_ON_DESKTOP else MORNING_ON_DESKTOP
            totals[1] += favoured_share(context_service, lists[other], context)
    for context, (own, other) in shares.items():
        assert own > other, (context, own, other)


def test_models_without_context_say_so_and_keep_their_list(context_service: RecService) -> None:
    user = most_context_driven_user(context_service)
    morning = context_service.recommend(user, 10, model="sasrec", context=MORNING_ON_DESKTOP)
    night = context_service.recommend(user, 10, model="sasrec", context=NIGHT_ON_MOBILE)
    assert not morning.context_used
    assert "recorded with every click, but SASRec does not use them" in morning.context_note
    assert [r.item.id for r in morning.items] == [r.item.id for r in night.items]


def test_a_session_context_reaches_the_model(context_service: RecService) -> None:
    """recommend_for_session takes the device and time of day of the session, as the app does."""
    user = most_context_driven_user(context_service)
    lists = []
    for device, time_of_day in (MORNING_ON_DESKTOP, NIGHT_ON_MOBILE):
        session = context_service.start_session(user, device, time_of_day)
        recs = context_service.recommend_for_session(session, 10, model="context_sasrec")
        assert recs.context == (device, time_of_day)
        lists.append([r.item.id for r in recs.items])
    assert lists[0] != lists[1]
