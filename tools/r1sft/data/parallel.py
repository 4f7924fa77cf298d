"""Run ``RowWorker.run`` over a stream of chunks in N processes and hand the results back in input order.

At most ``2 * N + 2`` chunks are in flight (read ahead, being converted, or converted and waiting for an earlier
one), so memory is bounded by the chunk size whatever the input size. Workers hand their converted lines back in
files of /dev/shm (``SlotLines``), one per chunk in flight, reused, and removed at the end (a run killed with
SIGKILL leaves its folder there: the next run removes folders of processes that no longer exist). Items that are not
work (markers of an input's start and end, a deferred read error) pass through in their place. Workers are started
with ``forkserver`` (a clean process, not a fork of one that may hold pyarrow's or a tokenizer's threads) without
re-running the caller's main script in them (``_bare_main``), and ignore Ctrl-C: the main process stops the pool,
which cancels what was not started, and cleans up its temp files.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import sys
import tempfile
import types
from collections import deque
from collections.abc import Iterable, Iterator

from r1sft.data.rowwork import RowWorker, WorkSpec, init_process, run_in_process
from r1sft.data.shared_keys import PREFIX
from r1sft.errors import R1sftError


class Work(tuple):
    """``(part, chunk)``: a chunk of the run's part ``part`` to convert."""

    __slots__ = ()


def convert_chunks(items: Iterable, spec: WorkSpec, workers: int) -> Iterator:
    """Each ``Work`` item replaced by its ``ChunkResult``; every other item passed through; order kept."""
    if workers <= 1:
        worker = RowWorker(spec)
        for item in items:
            yield worker.run(*item) if type(item) is Work else item
        return
    yield from _pooled(items, spec, workers)


def _pooled(items: Iterable, spec: WorkSpec, workers: int) -> Iterator:
    from concurrent.futures import Future, ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=init_process, initargs=(spec,))
    window: deque = deque()
    depth = 2 * workers + 2
    slots = _slot_folder()
    submitted = 0
    try:
        for item in items:
            if type(item) is Work:
                # a result is consumed before the generator resumes: depth + 2 slots are never two chunks' at once
                slot = f"{slots}/{submitted % (depth + 2)}" if slots else None
                with _bare_main():  # a submit may start a worker process
                    item = pool.submit(run_in_process, *item, slot)
                submitted += 1
            window.append(item)
            while len(window) > depth or (window and type(window[0]) is not Future):
                yield _resolve(window.popleft())
        while window:
            yield _resolve(window.popleft())
    except BrokenProcessPool as exc:
        raise R1sftError(f"r1sft convert: a worker process died ({exc}); try fewer --workers") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if slots:
            shutil.rmtree(slots, ignore_errors=True)


SHM = "/dev/shm"
_SLOT_PREFIX = PREFIX


def _slot_folder() -> str | None:
    """A private folder in /dev/shm for the slot files (None where there is no /dev/shm: lines come back pickled)."""
    if not (os.path.isdir(SHM) and os.access(SHM, os.W_OK)):
        return None
    for name in os.listdir(SHM):  # left by runs that were killed outright
        pid = name[len(_SLOT_PREFIX):].split("-", 1)[0]
        if name.startswith(_SLOT_PREFIX) and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(SHM, name), ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{_SLOT_PREFIX}{os.getpid()}-", dir=SHM)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's
        return True
    return True


@contextlib.contextmanager
def _bare_main():
    """While a worker starts, ``__main__`` is an empty module: forkserver and spawn children import the parent's main
    script (to find functions pickled by reference), which re-runs a script without an ``if __name__ ==
    "__main__"`` guard. Workers need only r1sft's own modules."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def _resolve(item):
    from concurrent.futures import Future

    return item.result() if type(item) is Future else item
