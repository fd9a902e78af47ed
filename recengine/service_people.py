"""The people part of the service: users, their sessions, events and onboarding choices.

A part of :class:`recengine.service.RecService`, split out by purpose (``ServiceBase``).
"""

from __future__ import annotations

import numpy as np
from faker import Faker

from db.errors import UnknownIdError
from db.repository import HistoryEvent, UserRow
from db.schema import DEVICES, TIMES_OF_DAY
from recengine.recommendations import HistoryItem
from recengine.service_base import ServiceBase

# Longest user name accepted (the database keeps 120 characters).
MAX_NAME = 120


class PeoplePart(ServiceBase):
    def counts(self) -> dict[str, int]:
        return self.repo.counts(self.dataset.id)

    def list_users(self, limit: int = 1000, *, without_app_users: bool = False) -> list[UserRow]:
        return self.repo.list_users(self.dataset.id, limit, without_app_users=without_app_users)

    def get_user(self, user_id: int) -> UserRow:
        """The user, refused unless it exists and belongs to this service's dataset."""
        user = self.repo.get_user(user_id)
        if user.dataset_id != self.dataset.id:
            raise UnknownIdError(f"User {user_id} is not in the dataset {self.dataset.name!r}")
        return user

    def create_user(
        self,
        name: str | None = None,
        seed: int | None = None,
        *,
        guest: bool = False,
        interests: dict[str, float] | None = None,
    ) -> int:
        """A new user with a Faker persona; ``name`` overrides the generated name (at most
        MAX_NAME characters, else ValueError). ``guest``: a visitor's own profile, made when a
        browser session starts. ``interests``: planted category weights (a lab persona)."""
        if name is not None and len(name.strip()) > MAX_NAME:
            raise ValueError(
                f"A name has at most {MAX_NAME} characters; this one has {len(name.strip()):,}"
            )
        fake = Faker()
        if seed is not None:
            fake.seed_instance(seed)
        persona: dict = {"city": fake.city(), "job": fake.job(), "created_in": "app"}
        if guest:
            persona["guest"] = True
        if interests:
            persona["interests"] = dict(interests)
        return self.repo.create_user(self.dataset.id, (name or "").strip() or fake.name(), persona)

    def start_session(
        self, user_id: int, device: str = "desktop", time_of_day: str = "afternoon"
    ) -> int:
        if device not in DEVICES:
            raise ValueError(f"Unknown device {device!r}; expected one of {DEVICES}")
        if time_of_day not in TIMES_OF_DAY:
            raise ValueError(f"Unknown time of day {time_of_day!r}; expected one of {TIMES_OF_DAY}")
        return self.repo.start_session(user_id, device, time_of_day)

    def record_event(self, session_id: int, item_id: int, kind: str) -> int:
        return self.repo.add_event(session_id, item_id, kind)

    def history(self, user_id: int) -> list[HistoryItem]:
        return self._history_items(self.repo.user_history(user_id))

    def _history_items(self, events: list[HistoryEvent]) -> list[HistoryItem]:
        items = self.items
        missing = {e.item_id for e in events} - items.keys()
        if missing:  # items added after the catalog was cached
            self._invalidate_catalog()
            items = self.items
        return [
            HistoryItem(items[e.item_id], e.kind, e.event_id, e.ts, e.device, e.time_of_day)
            for e in events
            if e.item_id in items
        ]

    def set_onboarding(self, user_id: int, categories: list[str]) -> None:
        """Store a new user's chosen categories; they shape the content side of every list."""
        user = self.get_user(user_id)
        if categories:  # an empty choice clears it
            self.content.onboarding_profile(categories=categories)  # refuses unknown names
        # Stored in the catalog's own spelling, whatever case was typed.
        spelling = {c.lower(): c for c in self.categories()}
        chosen = [spelling.get(c.strip().lower(), c) for c in categories]
        self.repo.update_preferences(user_id, {**user.preferences, "onboarding_categories": chosen})

    def onboarding(self, user_id: int) -> list[str]:
        return list(self.get_user(user_id).preferences.get("onboarding_categories", []))

    def _onboarding_categories(self, user: UserRow) -> list[str]:
        chosen = user.preferences.get("onboarding_categories") or []
        # A category may have left the catalog since it was chosen: use the ones still there.
        present = {c.lower() for c in self.categories()}
        return [c for c in chosen if c.lower() in present]

    def _onboarding_profile(self, user: UserRow) -> np.ndarray | None:
        known = self._onboarding_categories(user)
        return self.content.onboarding_profile(categories=known) if known else None
