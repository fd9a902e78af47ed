"""The Home page's three ways in: each lands on a page with a preset."""

from __future__ import annotations

import random
from dataclasses import dataclass

import streamlit as st

from recengine.personas import plant_interests
from recengine.service import RecService
from ui.sidebar import select_user

SIMULATOR = "pages/1_Session_Simulator.py"
EXPLORER = "pages/2_Attention_Explorer.py"
COLD_START = "pages/3_Cold_Start_Lab.py"
# The Explorer's working sequence (catalog item ids, oldest first) and the lab's persona.
EXPLORER_SEQUENCE_KEY = "explorer_sequence"
LAB_PERSONA_KEY = "lab_persona"
EXPLORER_LENGTH = 12


@dataclass(frozen=True)
class Scenario:
    key: str
    icon: str
    title: str
    text: str
    button: str


SCENARIOS = (
    Scenario(
        "shopper",
        ":material/shopping_bag:",
        "A returning shopper",
        "Browse as the store's most active user: a long history, the attention model in full "
        "charge, and for each pick the items it rests on.",
        "Browse as a regular",
    ),
    Scenario(
        "newcomer",
        ":material/person_add:",
        "A brand-new user",
        "Start from nothing: onboarding choices and content picks first, then watch the "
        "attention model take over click by click.",
        "Start as a new user",
    ),
    Scenario(
        "explore",
        ":material/grid_on:",
        "Explore attention",
        "Open the attention maps layer by layer and head by head, compare self- and target "
        "attention, and edit the history to see what changes.",
        "Open the explorer",
    ),
)


def most_active_user(service: RecService) -> int:
    [(user, _)] = service.repo.most_active_users(service.dataset.id, 1)
    return user


def new_lab_persona(service: RecService) -> int:
    """A new user with planted interests, selected for browsing."""
    seed = random.randrange(1_000_000)
    interests = plant_interests(service.categories(), seed)
    user = service.create_user(seed=seed, interests=interests)
    st.session_state[LAB_PERSONA_KEY] = {"user": user, "seed": seed}
    select_user(user)
    return user


def run_scenario(service: RecService, scenario: Scenario) -> None:
    if scenario.key == "shopper":
        select_user(most_active_user(service))
        st.switch_page(SIMULATOR)
    elif scenario.key == "newcomer":
        new_lab_persona(service)
        st.switch_page(COLD_START)
    else:
        user = most_active_user(service)
        history = service.history(user)
        st.session_state[EXPLORER_SEQUENCE_KEY] = [h.item.id for h in history][-EXPLORER_LENGTH:]
        st.switch_page(EXPLORER)
