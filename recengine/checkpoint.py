"""Checkpoints: weights + a JSON card (config, item vocabulary, data fingerprints, metrics).

Loading never returns a half-broken model: a missing, unreadable or incompatible checkpoint
raises :class:`CheckpointError` with a message the app can show next to its fallback picks.
Incompatible means: a card of another ``format_version`` (checked before anything else is read,
so a newer card with fields this code does not know still gets that message), a card whose
fields do not have the types the app reads (:data:`CARD_FIELDS`), a model kind this code cannot
build, weights that are not the ones the card describes (the card stores their SHA-256), or,
when the caller says what it expects, another dataset or catalog.

The card's ``data_fingerprint`` is informational only: every click adds an event and changes it,
so a model trained a minute ago on the same dataset must still load.

Saving is one atomic step, so a crash never pairs new weights with an old card. The folder a
caller names stays a plain folder (callers make, copy and delete it as they like) and holds::

    weights.pt -> .current/weights.pt     fixed links, made once
    model.json -> .current/model.json
    .current   -> .version-XXXX           the one link a save replaces
    .version-XXXX/{weights.pt,model.json} one whole checkpoint
    blend.json, snapshot.pt, ...          files of others, not versioned

A save writes weights and card into a new ``.version-*`` folder, then points ``.current`` at it
with one ``rename`` of a fresh link (atomic on POSIX): a reader of ``weights.pt`` and
``model.json`` sees the old pair or the new one, never a mix. Older versions are then removed.
Files derived from the weights (:data:`DERIVED_FILES`) are removed before the switch: a crash
leaves old weights without them (their defaults apply), never a stale one beside new weights.

Folders written by older code hold ``weights.pt`` and ``model.json`` as plain files; they load as
they are. The first save over one adopts them as a version first (hard links, contents
unchanged) and only then switches, so every step of the migration also leaves a matching pair.

A reader that straddles a switch (card of one version, weights of the next) is caught by the
SHA-256 and reads again; a file replaced by hand, or a crash of a save by older code between its
two writes, is refused with that reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from recengine.data import ItemVocab
from recengine.models.registry import SEQUENCE_MODELS
from recengine.models.sequence import SequenceModel

try:  # saves of one folder take turns (the app and the CLI may train the same model)
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: saves do not take turns
    fcntl = None  # type: ignore[assignment]

# Bump when a card or weights written by this code can no longer be read by the previous code
# (or the other way round). Optional new card fields with defaults do not need a bump.
FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.pt"
CARD_FILE = "model.json"
DEFAULT_MODEL_NAME = "sasrec-default"
# Inside a checkpoint folder: the link a save replaces, and the folders it points at.
CURRENT_LINK = ".current"
VERSION_PREFIX = ".version-"
_LINK_PREFIX = ".link-"  # a link being made; left behind only by a crash
# Files beside a checkpoint that were computed from its weights (the blend's κ): stale once the
# weights are replaced, so saving new weights removes them until they are made again.
DERIVED_FILES = ("blend.json",)
# A load that straddled a save reads again; more saves than this during one load is an error.
_READ_ATTEMPTS = 3


class CheckpointError(Exception):
    """The checkpoint cannot be used; the message says which file and why."""


@dataclass
class ModelCard:
    model: str
    model_config: dict[str, Any]
    item_ids: list[int]
    data_fingerprint: str
    catalog_fingerprint: str
    # Content tokens the model embeds (token id i + 1 is token_vocab[i]); empty: ids only.
    token_vocab: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    # Name of the dataset the model was trained on ("" when not recorded: older cards).
    dataset: str = ""
    # SHA-256 of weights.pt, set by save_checkpoint ("" in cards written before: not checked).
    weights_sha256: str = ""

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True)


@dataclass
class LoadedModel:
    model: SequenceModel
    vocab: ItemVocab
    card: ModelCard
    path: Path


def checkpoint_dir(model_dir: Path, name: str = DEFAULT_MODEL_NAME) -> Path:
    return model_dir / name


# ---- the card's fields, as the app reads them -------------------------------------------------


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, list) and all(check(v) for v in value)


def _dict_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    # JSON object keys are always strings: only the values need a look.
    return lambda value: isinstance(value, dict) and all(check(v) for v in value.values())


def _dict_with(known: dict[str, Callable[[Any], bool]]) -> Callable[[Any], bool]:
    """An object whose ``known`` keys, where present, pass their check; other keys are free."""
    return lambda value: (
        isinstance(value, dict)
        and all(check(value[key]) for key, check in known.items() if key in value)
    )


# Field -> (check, what it must be, in words). Shapes are those the pages and the CLI read:
# metrics[model][split][metric] is a number (ui/headline_cards.py, pages/4_Model_Lab.py), and
# the training numbers the Model Lab tabulates.
CARD_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "model": (_is_str, "a string"),
    "model_config": (lambda v: isinstance(v, dict), "an object"),
    "item_ids": (_list_of(_is_int), "a list of integers"),
    "data_fingerprint": (_is_str, "a string"),
    "catalog_fingerprint": (_is_str, "a string"),
    "token_vocab": (_list_of(_is_str), "a list of strings"),
    "metrics": (
        _dict_of(_dict_of(_dict_of(_is_number))),
        "an object of model -> split -> metric -> number",
    ),
    "training": (
        _dict_with(
            {
                "train_seconds": _optional(_is_number),
                "epochs_run": _optional(_is_number),
                "stop_reason": _optional(_is_str),
            }
        ),
        "an object (train_seconds and epochs_run numbers, stop_reason a string)",
    ),
    "format_version": (_is_int, "an integer"),
    "dataset": (_is_str, "a string"),
    "weights_sha256": (
        lambda v: isinstance(v, str) and re.fullmatch(r"([0-9a-f]{64})?", v) is not None,
        "a SHA-256 hex digest (or empty)",
    ),
}
# The test metrics a page indexes directly once a card has its own model's metrics: that model's
# and popularity's (ui/headline_cards.py, recengine/cli.py).
SHOWN_METRICS = ("hr@10", "ndcg@10", "n_cases")
_REQUIRED_FIELDS = [
    f.name for f in fields(ModelCard) if f.default is MISSING and f.default_factory is MISSING
]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _field_problem(raw: dict[str, Any]) -> str | None:
    """What makes ``raw`` not a card this app reads, or None."""
    unknown = sorted(set(raw) - set(CARD_FIELDS))
    if unknown:
        return f"unknown field {unknown[0]!r}"
    for name in CARD_FIELDS:
        if name not in raw and name in _REQUIRED_FIELDS:
            return f"field {name!r} is missing"
    for name, (check, expected) in CARD_FIELDS.items():
        if name in raw and not check(raw[name]):
            return f"field {name!r} must be {expected}, not {_shown(raw[name])}"
    metrics = raw.get("metrics", {})
    if raw["model"] in metrics:
        for owner in (raw["model"], "popularity"):
            test = metrics.get(owner, {}).get("test", {})
            for key in SHOWN_METRICS:
                if key not in test:
                    return f"field 'metrics' lacks metrics[{owner!r}]['test'][{key!r}]"
    return None


def _read_card(card_path: Path, shown: Path) -> ModelCard:
    """The card at ``card_path``; messages name it ``shown`` (the path the caller gave)."""
    if not card_path.is_file():
        raise CheckpointError(f"No model checkpoint at {shown}")
    try:
        raw = json.loads(card_path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"Model card {shown} is unreadable: {exc}") from exc
    if not isinstance(raw, dict):
        raise CheckpointError(f"Model card {shown} is unreadable: not a JSON object")
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"Model card {shown} has format version {version}; this code reads format "
            f"version {FORMAT_VERSION}. Retrain the model."
        )
    problem = _field_problem(raw)
    if problem is not None:
        raise CheckpointError(f"Model card {shown} is unreadable: {problem}. Retrain the model.")
    card = ModelCard(**raw)
    if card.model not in SEQUENCE_MODELS:
        raise CheckpointError(
            f"Model card {shown} is for model {card.model!r}; this code reads "
            f"{', '.join(repr(m) for m in SEQUENCE_MODELS)}"
        )
    return card


def read_card(directory: Path) -> ModelCard:
    """The card of the checkpoint in ``directory``, its fields checked (:data:`CARD_FIELDS`)."""
    return _read_card(directory / CARD_FILE, directory / CARD_FILE)


# ---- saving -----------------------------------------------------------------------------------


def _fsync_dir(directory: Path) -> None:
    # A rename is durable once its folder is synced (not every file system can: best effort).
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_new(path: Path, data: bytes) -> None:
    with open(path, "xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def _save_lock(directory: Path) -> Iterator[None]:
    """One save of a folder at a time, across processes: a save removes the versions it did
    not make, and must not remove one that another save is still writing."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _link(directory: Path, name: str, target: str) -> None:
    """Make ``directory/name`` a link to ``target`` in one rename: readers see the old entry or
    the new link, never none. The target is relative, so the folder can be moved or copied."""
    temporary = directory / f"{_LINK_PREFIX}{os.urandom(6).hex()}"
    os.symlink(target, temporary)
    try:
        os.replace(temporary, directory / name)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _is_link_to(path: Path, target: str) -> bool:
    return path.is_symlink() and os.readlink(path) == target


def _switch(directory: Path, version: Path) -> None:
    """Point ``.current`` at ``version``, then make sure the fixed links go through it."""
    current = directory / CURRENT_LINK
    if current.is_dir() and not current.is_symlink():
        # A plain copy of a checkpoint folder turned the link into a folder: nothing reads it
        # (the fixed links are plain files then, see _adopt_plain_files), so it can go.
        shutil.rmtree(current)
    _link(directory, CURRENT_LINK, version.name)
    _fsync_dir(directory)
    # Made once per folder (or replacing adopted plain files of the same contents). The card
    # first: a crash between the two leaves "weights missing", not weights without a card.
    for name in (CARD_FILE, WEIGHTS_FILE):
        target = f"{CURRENT_LINK}/{name}"
        if not _is_link_to(directory / name, target):
            _link(directory, name, target)
    _fsync_dir(directory)


def _adopt_plain_files(directory: Path) -> None:
    """Make the plain weights and card of an older folder a version of their own, unchanged, so
    that the switch to new ones is a single rename like any other."""
    plain = [
        name
        for name in (WEIGHTS_FILE, CARD_FILE)
        if (directory / name).is_file() and not (directory / name).is_symlink()
    ]
    if not plain:
        return
    version = Path(tempfile.mkdtemp(dir=directory, prefix=VERSION_PREFIX))
    for name in plain:
        try:
            os.link(directory / name, version / name)
        except OSError:  # a file system without hard links
            shutil.copy2(directory / name, version / name)
    _fsync_dir(version)
    _switch(directory, version)


def _remove_old_versions(directory: Path) -> None:
    """Every version but the current one, and links left by a crash (best effort: a reader that
    still has an old file open keeps reading it)."""
    keep = os.readlink(directory / CURRENT_LINK)
    for entry in directory.iterdir():
        if entry.name.startswith(VERSION_PREFIX) and entry.name != keep:
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.name.startswith(_LINK_PREFIX) and entry.is_symlink():
            entry.unlink(missing_ok=True)


def save_checkpoint(directory: Path, model: SequenceModel, card: ModelCard) -> Path:
    """Save weights and card into ``directory`` in one atomic switch (see the module docstring).
    The card written carries the weights' SHA-256; ``card`` itself is left as it is."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    weights = buffer.getvalue()
    written = replace(card, weights_sha256=hashlib.sha256(weights).hexdigest())
    directory.mkdir(parents=True, exist_ok=True)
    with _save_lock(directory):
        _adopt_plain_files(directory)
        version = Path(tempfile.mkdtemp(dir=directory, prefix=VERSION_PREFIX))
        try:
            _write_new(version / WEIGHTS_FILE, weights)
            _write_new(version / CARD_FILE, written.to_json().encode())
            _fsync_dir(version)
            for name in DERIVED_FILES:
                (directory / name).unlink(missing_ok=True)
            _switch(directory, version)
        except BaseException:
            if not _is_link_to(directory / CURRENT_LINK, version.name):
                shutil.rmtree(version, ignore_errors=True)
            raise
        _remove_old_versions(directory)
    return directory


def check_card(
    card: ModelCard,
    card_path: Path,
    *,
    dataset: str | None = None,
    catalog_fingerprint: str | None = None,
) -> None:
    """Refuse a card trained on another dataset or catalog than the caller expects.

    A card without a dataset name (written before the field existed) is judged by its catalog
    fingerprint alone.
    """
    if dataset is not None and card.dataset and card.dataset != dataset:
        raise CheckpointError(
            f"The checkpoint at {card_path} was trained on dataset {card.dataset!r}, "
            f"not {dataset!r}; retrain it"
        )
    if catalog_fingerprint is not None and card.catalog_fingerprint != catalog_fingerprint:
        raise CheckpointError(
            f"The checkpoint at {card_path} was trained on another catalog (fingerprint "
            f"{card.catalog_fingerprint!r}, this data has {catalog_fingerprint!r}); retrain it"
        )


def _reason(exc: Exception) -> str:
    """The first line of a loading error, without torch's advice to retry with
    ``weights_only=False``: that would run whatever code the file carries."""
    text = str(exc).strip()
    if "weights_only" in text or "Weights only load failed" in text:
        return "it is not a weights file this app reads safely (a pickle of other objects)"
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:300]


def _resolved(directory: Path) -> tuple[str, str]:
    """Where the card and the weights of ``directory`` are right now (through the links)."""
    return (
        os.path.realpath(directory / CARD_FILE),
        os.path.realpath(directory / WEIGHTS_FILE),
    )


def load_checkpoint(
    directory: Path,
    device: torch.device | str = "cpu",
    *,
    dataset: str | None = None,
    catalog_fingerprint: str | None = None,
) -> LoadedModel:
    """Load weights and card; with ``dataset`` / ``catalog_fingerprint``, refuse a checkpoint
    trained on other data (see :func:`check_card`) before reading any weights.

    A load that fails while a save switched versions under it reads the new version."""
    for attempt in range(_READ_ATTEMPTS):
        paths = _resolved(directory)
        try:
            return _load(directory, paths, device, dataset, catalog_fingerprint)
        except CheckpointError:
            if attempt == _READ_ATTEMPTS - 1 or _resolved(directory) == paths:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _load(
    directory: Path,
    paths: tuple[str, str],
    device: torch.device | str,
    dataset: str | None,
    catalog_fingerprint: str | None,
) -> LoadedModel:
    # Messages name the files by the folder the caller gave, never by a version inside it.
    card_path, weights_path = directory / CARD_FILE, directory / WEIGHTS_FILE
    card = _read_card(Path(paths[0]), card_path)
    check_card(card, card_path, dataset=dataset, catalog_fingerprint=catalog_fingerprint)
    try:
        weights = Path(paths[1]).read_bytes()  # read once: the bytes hashed are those loaded
    except (FileNotFoundError, IsADirectoryError):
        raise CheckpointError(f"Model weights missing: {weights_path}") from None
    except OSError as exc:
        raise CheckpointError(f"Model weights {weights_path} cannot be loaded: {exc}") from exc
    if card.weights_sha256 and hashlib.sha256(weights).hexdigest() != card.weights_sha256:
        raise CheckpointError(
            f"Model weights {weights_path} cannot be loaded: they do not match their card "
            f"{CARD_FILE} (another SHA-256: a save that crashed between its writes, or a file "
            "replaced by hand). Retrain the model."
        )
    module_class, config_class = SEQUENCE_MODELS[card.model]
    try:
        config = config_class(**card.model_config)
        if config.n_items != len(card.item_ids):
            raise ValueError(
                f"config says {config.n_items} items, vocabulary has {len(card.item_ids)}"
            )
        model = module_class(config)
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:
        raise CheckpointError(
            f"Model weights {weights_path} cannot be loaded: {_reason(exc)}"
        ) from exc
    model.to(device).eval()
    return LoadedModel(model, ItemVocab(tuple(card.item_ids)), card, directory)
