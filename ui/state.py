"""One RecService per dataset per server process, and the page-level guard around it."""

from __future__ import annotations

import gc

import streamlit as st
import torch

from db.engine import database_name, describe_location
from db.errors import DataError
from recengine.service import RecService
from recengine.settings import Settings, SettingsError
from ui.text import plain

# The dataset the person is looking at; set by the sidebar's dataset picker.
DATASET_KEY = "current_dataset"


@st.cache_resource(
    show_spinner="Opening the database (first start makes the synthetic world)…", max_entries=8
)
def _service(dataset: str) -> RecService:
    settings = Settings.from_env().with_(dataset=dataset)
    torch.set_num_threads(max(1, settings.torch_threads))
    service = RecService(settings)
    service.ensure_database()
    service.load_model()
    # The model, catalog and ORM objects live as long as the process: move them out of the
    # cyclic GC's way, or a full collection (~190 ms with an ML-1M catalog) lands on a click.
    gc.collect()
    gc.freeze()
    return service


def default_dataset() -> str:
    return Settings.from_env().dataset


def get_service() -> RecService:
    """The service of the chosen dataset; a settings or database problem stops the page with
    its reason (and is not cached: the next rerun tries again)."""
    try:
        dataset = st.session_state.get(DATASET_KEY) or default_dataset()
        return _service(dataset)
    except SettingsError as exc:
        st.error(
            plain(f"The server is set up wrongly: {exc}. Its operator can fix the setting."),
            icon=":material/error:",
        )
        st.stop()
        raise  # unreachable
    except DataError as exc:
        reason = _public(str(exc))
        if dataset != default_dataset():
            # The chosen dataset became unusable: fall back, so the sidebar can still be drawn.
            st.session_state.pop(DATASET_KEY, None)
            st.warning(
                plain(f"Dataset {dataset!r} cannot be used ({reason}); back to the default.")
            )
            return get_service()
        # Not cached: the next rerun tries again, so the app recovers once the database does.
        st.error(plain(f"The database cannot be used. {reason}"), icon=":material/error:")
        st.stop()
        raise  # unreachable: st.stop() raises, but type checkers don't know that


def _public(message: str) -> str:
    """A data-layer message without the database's path or credentials (operators get those
    from the server log and the CLI): the database is named as a visitor may see it."""
    url = Settings.from_env().resolved_database_url
    return message.replace(describe_location(url), database_name(url))
