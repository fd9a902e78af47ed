"""Train the model from a page with a live progress bar."""

from __future__ import annotations

import streamlit as st

from recengine.service import RecService
from recengine.train import TrainProgress


def train_button(service: RecService, label: str = "Train the attention model now") -> None:
    if not st.button(label, type="primary", key="train_model", icon=":material/model_training:"):
        return
    bar = st.progress(0.0, text="Starting training…")

    def progress(p: TrainProgress) -> None:
        bar.progress(p.fraction, text=p.describe())

    with st.spinner("Training SASRec on the events in the database…"):
        result = service.train_model(progress=progress)
    bar.progress(1.0, text=f"Done in {result.card.training['train_seconds']} s")
    st.rerun()
