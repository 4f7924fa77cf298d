"""Where converted lines go: ``LineWriter`` batches them into ``writev`` calls; ``Spool`` holds the candidates of
``--max-per-prompt`` until the end, when it is known which of them a shorter answer pushed out."""

from __future__ import annotations

import os
import tempfile
from array import array
from collections.abc import Iterator
from pathlib import Path

WRITE_BYTES = 8 << 20
IOV_MAX = 1024  # POSIX minimum for writev's buffer count


class LineWriter:
    """Lines handed to the kernel with ``writev`` in 8 MB batches: no joined copy in user space."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.lines: list = []
        self.size = 0

    def write(self, line) -> None:
        self.lines.append(line)
        self.size += len(line)
        if self.size >= WRITE_BYTES:
            self.flush()

    def write_file(self, path: str, size: int) -> None:
        """The first ``size`` bytes of the file at ``path``, copied by the kernel (``sendfile``), after the lines
        written before."""
        self.flush()
        with open(path, "rb") as src:
            out, fd, offset = self.handle.fileno(), src.fileno(), 0
            while offset < size:
                sent = os.sendfile(out, fd, offset, size - offset)
                if not sent:
                    raise OSError(f"{path}: ended at byte {offset} of {size}")
                offset += sent

    def write_lines(self, lines: list) -> None:
        self.lines.extend(lines)
        self.size += sum(map(len, lines))
        if self.size >= WRITE_BYTES:
            self.flush()

    def flush(self) -> None:
        lines = self.lines
        if not lines:
            return
        writev = getattr(os, "writev", None)
        if writev is None:
            self.handle.write(b"".join(lines))
        else:
            fd = self.handle.fileno()
            for i in range(0, len(lines), IOV_MAX):
                chunk = lines[i:i + IOV_MAX]
                written = writev(fd, chunk)
                total = sum(map(len, chunk))
                if written < total:  # a short write (rare on regular files): finish it the plain way
                    rest = b"".join(chunk)[written:]
                    while rest:
                        rest = rest[os.write(fd, rest):]
        lines.clear()
        self.size = 0


class Spool:
    """Candidate lines in an unlinked temp file beside the output (it vanishes with the process, whatever happens),
    with per line its token count, flags and part; ``drop`` marks one pushed out; ``survivors`` reads the rest back
    in order. Memory: a few bytes per candidate."""

    def __init__(self, folder: Path, with_tokens: bool) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.file = tempfile.TemporaryFile(dir=folder, prefix=".r1sft-spool-")  # noqa: SIM115 (closed by close())
        self.writer = LineWriter(self.file)
        self.tokens = array("q") if with_tokens else None
        self.flags = bytearray()
        self.parts = array("H")
        self.dropped = bytearray()
        self.count = 0

    def add(self, line, n_tokens: int | None, flags: int, part: int) -> int:
        self.writer.write(line)
        if self.tokens is not None:
            self.tokens.append(n_tokens)
        self.flags.append(flags)
        self.parts.append(part)
        self.dropped.append(0)
        self.count += 1
        return self.count - 1

    def drop(self, index: int) -> None:
        self.dropped[index] = 1

    def survivors(self, block_bytes: int = 8 << 20) -> Iterator[tuple[bytes, int | None, int, int]]:
        """(line, n_tokens, flags, part) of every candidate not dropped, in the order they were added."""
        self.writer.flush()
        self.file.seek(0)
        index = 0
        carry = b""
        while True:
            block = self.file.read(block_bytes)
            if not block:
                break
            block = carry + block if carry else block
            lines = block.split(b"\n")
            carry = lines.pop()  # converted lines never hold a raw newline (JSON escapes it): split is exact
            for line in lines:
                if not self.dropped[index]:
                    yield (line + b"\n", self.tokens[index] if self.tokens is not None else None, self.flags[index],
                           self.parts[index])
                index += 1
        if carry or index != self.count:
            raise AssertionError(f"spool holds {index} lines, expected {self.count}")

    def close(self) -> None:
        self.file.close()
