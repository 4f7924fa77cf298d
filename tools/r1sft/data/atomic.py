"""Write several output files so that either all of them appear or none do.

Each file is written to a hidden temp file in its final folder (same filesystem, so ``os.replace`` is atomic), and
the temp files are renamed into place only after the whole conversion succeeded. On any error they are deleted:
a failed run leaves earlier outputs exactly as they were.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO


class AtomicFiles:
    def __init__(self) -> None:
        self._pending: list[tuple[BinaryIO, str, Path]] = []

    def open(self, final: Path) -> BinaryIO:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
        handle = os.fdopen(fd, "wb")
        self._pending.append((handle, tmp, final))
        return handle

    def write_bytes(self, final: Path, data: bytes) -> None:
        self.open(final).write(data)

    def commit(self) -> None:
        for handle, _, _ in self._pending:
            handle.close()
        for _, tmp, final in self._pending:
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are ordinary shared files
            os.replace(tmp, final)
        self._pending.clear()

    def abort(self) -> None:
        for handle, tmp, _ in self._pending:
            with contextlib.suppress(OSError):
                handle.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._pending.clear()

    def __enter__(self) -> AtomicFiles:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

