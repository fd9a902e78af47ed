"""Fast, deterministic draws for the per-step loop: uniform floats in blocks, weighted pools."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class Uniforms:
    """Uniform floats fetched from the generator in blocks.

    One numpy call per block keeps the per-step loop in plain Python fast, and the stream stays
    a deterministic function of the seed.
    """

    def __init__(self, rng: np.random.Generator, block: int = 4096) -> None:
        self._rng = rng
        self._block = block
        self._buffer: list[float] = []
        self._pos = 0

    def next(self) -> float:
        if self._pos >= len(self._buffer):
            self._buffer = self._rng.random(self._block).tolist()
            self._pos = 0
        value = self._buffer[self._pos]
        self._pos += 1
        return value


@dataclass(frozen=True)
class Pool:
    """Item ids with weights: a draw is one bisect over the cumulative weights."""

    ids: tuple[int, ...]
    weights: tuple[float, ...]
    cumulative: tuple[float, ...]

    @classmethod
    def of(cls, ids: Sequence[int], weights: Sequence[float]) -> Pool:
        w = np.asarray(weights, dtype=float)
        return cls(tuple(ids), tuple(w.tolist()), tuple(np.cumsum(w).tolist()))

    def draw(self, u: float) -> int:
        index = bisect_right(self.cumulative, u * self.cumulative[-1])
        return self.ids[min(index, len(self.ids) - 1)]

    def draw_unseen(self, uniforms: Uniforms, seen: set[int], tries: int) -> int | None:
        """A draw conditioned on "not in ``seen``"; None when every item is seen.

        Rejection first (cheap while few items are seen), then an exact draw over the unseen
        items, so that a well-explored pool does not turn steps into skips and bias the shares.
        """
        for _ in range(tries):
            item = self.draw(uniforms.next())
            if item not in seen:
                return item
        unseen = [(i, w) for i, w in zip(self.ids, self.weights, strict=True) if i not in seen]
        if not unseen:
            return None
        ids, weights = zip(*unseen, strict=True)
        return Pool.of(ids, weights).draw(uniforms.next())
