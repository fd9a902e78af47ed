"""Why a pick: attention, rollout, occlusion, gradient × input, how faithful each is, and a reason.

One module per method, one shared signature: ``attention.py`` (rollout, the uniform-attention
check), ``occlusion.py`` and ``one_pass.py`` (removals), ``gradients.py``, ``faithfulness.py``,
``reasons.py``; ``pick.py`` puts them together for any sequence model through its interface, so a
new model adds its parts (its ``explain_methods`` and capabilities) without another branch here.

For one recommended item and a history (model-index space: items 1..n_items), ``explain_pick``
returns an :class:`Explanation` with one value per history position for each method:

- ``attention``: the last position's weights in the last layer, mean over heads (what the app
  draws); ``attention_layers`` keeps every layer and head.
- ``rollout`` (Abnar & Zuidema, 2020): per layer, head-averaged attention plus the identity (the
  residual path), rows renormalised, multiplied across layers; the last row.
- ``occlusion``: how much the item's score drops when that one history item is removed (delete it
  and left-pad; positions count real items, so only the items after it move up by one). All
  removals are one batched pass; ``rank_without`` is the item's rank after each removal.
- ``grad_input``: gradient of the score with respect to each input item vector, times that vector,
  summed over the embedding dimension (one forward and one batched backward: cheap).
- ``split`` (TiSASRec only): each last-position logit of the last layer split into its content
  part ("attended because similar") and its position and time parts ("because recent").
- target attention (DIN, the SASRec readout): ``attention`` holds the pick's own weights over
  the history (``candidate_attention``), different for every pick (``attention_pick_specific``).
- ``contribution`` and ``readout_drop`` (models with ``logit_split``: the SASRec readout): each
  item's exact share of the pick's logit (the shares plus ``prior`` are the logit), and what the
  logit loses when the readout skips the item, from the same pass. ``bench/explain.py`` found
  the planted causes best with the readout drop, so the pages lead with it.

``faithfulness`` tests each attention-like signal against what removing items really does:
Kendall τ-b with the occlusion effects; the score drop when the top-signal item is removed, next
to the mean drop of a random removal and the drop of the lowest-signal item; and ERASER's
comprehensiveness (drop when the top-k items are removed) and sufficiency (drop when *only* the
top-k are kept) (DeYoung et al., 2020). ``reason`` is one line of plain text chosen from the
faithful signal (see :func:`reason_text`).

``explain_top`` does the same for a whole list of picks at once: every removal scores the whole
catalog, so one batched pass gives every pick's occlusion. For SASRec with one or two layers the
removals reuse the full pass (items before the removed one keep their states exactly; the first
layer's attention for all removals at once is a prefix/suffix sum, see ``one_pass.py``), which
is several times faster than running the removed histories through the model; other models go
through their own ``score``. Both give the model's own scores (tests check them against one
forward per removal). DIN scores the picks only per removal (its activation unit runs per
candidate), so its ranks after a removal are approximate.

Scores are the model's logits by default (what the ranking uses); ``score="log_prob"`` uses the
log-softmax over the catalog instead (not for DIN). Ranks count unseen items only (the
history is excluded, as in the service) and count ties against the pick. Histories longer than
the model's window are cut to their last ``max_len`` items, as the model sees them: every
per-position array aligns with ``Explanation.history`` (that window) and ``n_dropped`` says how
many older items were outside it. Everything runs on the CPU (a model on a GPU is copied there
per call; keep a CPU copy to avoid that). Bad input raises ValueError naming what is wrong.
"""

from recengine.explain.attention import attention_rollout, uniform_attention
from recengine.explain.faithfulness import Faithfulness, kendall_tau, top_positions
from recengine.explain.occlusion import occlusion_scores
from recengine.explain.pick import METHODS, explain_pick, explain_top
from recengine.explain.reasons import EVENT_KINDS, MIN_RANK_SHIFT, Reason, reason_text
from recengine.explain.results import Explanation, TimeSplit

__all__ = [
    "EVENT_KINDS",
    "METHODS",
    "MIN_RANK_SHIFT",
    "Explanation",
    "Faithfulness",
    "Reason",
    "TimeSplit",
    "attention_rollout",
    "explain_pick",
    "explain_top",
    "kendall_tau",
    "occlusion_scores",
    "reason_text",
    "top_positions",
    "uniform_attention",
]
