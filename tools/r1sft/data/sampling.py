"""``--limit N --seed S``: a uniform random sample of N rows that is the same on every run.

Each accepted row gets a key from (seed, file, row index); the N rows with the smallest keys win (bottom-k sampling,
a heap of N rows: memory grows with N, not with the input). Winners are written in source order.
"""

from __future__ import annotations

import heapq
from typing import Any

from r1sft.data.hygiene import digest64


class SeededSample:
    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self._heap: list[tuple[int, int, Any]] = []  # (-key, order, item): the root is the largest key
        self._order = 0

    def offer(self, file: str, row: int, item: Any) -> Any | None:
        """Add ``item``; returns the item pushed out of the sample (maybe ``item`` itself), or None."""
        key = digest64(f"{self.seed}\x1f{file}\x1f{row}")
        self._order += 1
        entry = (-key, self._order, item)
        if len(self._heap) < self.size:
            heapq.heappush(self._heap, entry)
            return None
        if -self._heap[0][0] > key:
            return heapq.heapreplace(self._heap, entry)[2]
        return item

    def items_in_source_order(self) -> list[Any]:
        return [item for _, _, item in sorted(self._heap, key=lambda e: e[1])]
