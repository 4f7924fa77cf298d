"""Prompt keys the main process has kept, readable by the worker processes: a hint that saves work, never a decision.

A prompt already kept (in ``PromptIndex``) needs neither MinHash band keys (another answer of it is capped or a
duplicate, never compared band by band) nor a decontamination check (its first answer passed one, on the same text),
so a worker that finds a row's prompt key here skips both. Without the table each worker would hash and check every
prompt once itself: with OpenThoughts3's ~16 answers per question spread over N workers, N times in all. The table
only grows, so a worker that has not seen a key yet just does the work; output and stats are the same either way.

One writer (the main process), 8-byte slots written whole (atomic on the 64-bit CPUs CPython runs on), open
addressing; in a file in /dev/shm mapped by every process. Full at half its slots: then it stops growing.
"""

from __future__ import annotations

import mmap
import os
import shutil
import tempfile

SLOTS = 1 << 22  # 32 MB of address space, touched only where keys land
PREFIX = "r1sft-convert-"  # the stale-folder sweep of parallel.py removes those of dead runs


class SharedKeys:
    def __init__(self, path: str, writable: bool) -> None:
        import numpy as np

        self.path = path
        with open(path, "r+b" if writable else "rb") as f:
            self._map = mmap.mmap(f.fileno(), SLOTS * 8, access=mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ)
        self.slots = np.frombuffer(self._map, dtype=np.uint64)
        self.mask = SLOTS - 1
        self.count = 0

    @classmethod
    def create(cls, folder: str = "/dev/shm") -> SharedKeys | None:
        """A new table in a private folder of ``folder``; None where there is no such writable folder."""
        if not (os.path.isdir(folder) and os.access(folder, os.W_OK)):
            return None
        private = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-keys-", dir=folder)
        path = os.path.join(private, "keys")
        with open(path, "wb") as f:
            f.truncate(SLOTS * 8)  # sparse: zero pages cost nothing until written
        return cls(path, writable=True)

    def add(self, key: int) -> None:
        if not key or self.count >= SLOTS // 2:
            return
        slots, i = self.slots, key & self.mask
        while True:
            held = int(slots[i])
            if held == key:
                return
            if not held:
                slots[i] = key
                self.count += 1
                return
            i = (i + 1) & self.mask

    def __contains__(self, key: int) -> bool:
        if not key:
            return False
        slots, i = self.slots, key & self.mask
        while True:
            held = int(slots[i])
            if held == key:
                return True
            if not held:
                return False
            i = (i + 1) & self.mask

    def close(self, remove: bool = False) -> None:
        self.slots = None  # the array's buffer export must go before the map can close
        self._map.close()
        if remove:
            shutil.rmtree(os.path.dirname(self.path), ignore_errors=True)
