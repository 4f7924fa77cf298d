"""Stream rows out of JSONL, JSON-array and parquet files, folders of shards, or a hub dataset.

Memory stays flat whatever the input size: JSONL is read in 8 MiB blocks cut after their last newline and parsed
line by line with orjson; a JSON array is decoded one element at a time (``raw_decode`` over a sliding window);
parquet goes through ``iter_batches``. An input is read as ``Chunk``s in order, so that the parsing of a chunk
(JSONL lines, parquet batches to Python rows) can happen in a worker process (``r1sft convert --workers``); JSON
arrays and hub datasets are parsed here. Every row carries its position (file and 0-based row index, plus the
1-based line for JSONL) so a rejected row can be found again.

Where one bad row ends and a bad file begins:
- a JSONL line or JSON array element that is not JSON (invalid UTF-8 included), or not an object, is a rejected
  row (``json_error`` / ``wrong_type``);
- a file whose first line holds NUL bytes or invalid UTF-8 is binary, not JSONL: file error;
- a JSONL file in which no line parses (or the first 100 non-blank lines all fail) is not JSONL: file error;
- a JSON array that does not parse to its closing bracket (truncated, malformed) is a file error naming the element;
- a parquet file pyarrow cannot open or read is a file error; missing columns are checked by the pipeline.

A UTF-8 byte order mark at the start of a text file is skipped; a file that starts with gzip's or zstd's magic bytes
is decompressed as it is read, whatever its name (other compressions are named in the error).
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import json
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import orjson

from r1sft.errors import R1sftError

BLOCK_BYTES = 8 << 20
SNIFF_BYTES = 64 << 10
MAX_LEADING_FAILURES = 100
DATA_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet")
CHUNK_ROWS = 4096  # rows per chunk of already-parsed records (JSON arrays, hub datasets) and at most per parquet chunk
PARQUET_BATCH_ROWS = 256
GZIP_SUFFIXES = (".jsonl", ".ndjson", ".json")  # X.jsonl.gz, X.jsonl.zst and so on
COMPRESSED_SUFFIXES = (".gz", ".zst", ".zstd")
SIDE_FILE_ENDINGS = (".stats.json", ".rejects.jsonl")  # what a conversion writes beside its output, never input
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZSTD_READ_BYTES = 1 << 20  # compressed bytes per read
ZSTD_FEED_BYTES = 16 << 10  # compressed bytes per decompress call
COMPRESSED = {b"BZh": ("bzip2", "bunzip2"),
              b"\xfd7zXZ\x00": ("xz", "xz -d"), b"PK\x03\x04": ("zip", "unzip")}
# Bytes that were not UTF-8, as surrogateescape decoding keeps them (U+DC80..U+DCFF; valid UTF-8 never gives these)
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class Record(NamedTuple):
    """One row as read: ``data`` is the row dict, or None with ``error``/``detail`` saying why it is unusable."""

    file: str
    row: int
    line: int | None
    data: dict | None
    error: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Input:
    """A file to read (``kind``: jsonl, json-array, parquet, sniff) or a hub dataset (``kind`` "hub")."""

    label: str
    kind: str
    path: Path | None = None
    size: int = 0


def resolve_inputs(specs: list[str | os.PathLike], exclude=(), skipped: list[Path] | None = None) -> list[Input]:
    """Expand files, folders of shards (recursively, sorted) and hub ids into a list of inputs.

    Files in ``exclude`` (a run's own outputs) are never taken from a folder: re-running a conversion whose output
    lies in its input folder must not read the last output back in. The ones found are appended to ``skipped``.
    """
    excluded = {_absolute(p) for p in exclude}
    inputs: list[Input] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            files = []
            for p in sorted(p for p in path.rglob("*") if p.is_file() and _is_data_file(p)):
                if _absolute(p) in excluded:
                    if skipped is not None:
                        skipped.append(p)
                else:
                    files.append(p)
            if not files:
                raise R1sftError(f"{spec}: folder holds no .jsonl, .json or .parquet files")
            inputs.extend(_file_input(p) for p in files)
        elif path.is_file():
            inputs.append(_file_input(path))
        elif path.suffix not in DATA_SUFFIXES and _HUB_ID.match(str(spec)) and not path.parent.is_dir():
            inputs.append(Input(label=f"hub:{spec}", kind="hub"))
        elif _HUB_ID.match(str(spec)) and path.parent.is_dir():  # "data/stratos": a local path with a typo
            raise R1sftError(f"{spec}: no such file or folder in {path.parent}/ (a local folder, so not read as a "
                             "hub id)")
        else:
            raise R1sftError(f"{spec}: no such file or folder")
    return inputs


def _is_data_file(path: Path) -> bool:
    name = path.name
    if name == "dataset_info.json" or name.endswith(SIDE_FILE_ENDINGS):
        return False
    return path.suffix in DATA_SUFFIXES or (path.suffix in COMPRESSED_SUFFIXES
                                            and Path(path.stem).suffix in GZIP_SUFFIXES)


def _absolute(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(path))


def _file_input(path: Path) -> Input:
    suffix = Path(path.stem).suffix if path.suffix in COMPRESSED_SUFFIXES else path.suffix
    kind = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}.get(suffix, "sniff")
    return Input(label=_printable(str(path)), kind=kind, path=path, size=path.stat().st_size)


def _printable(name: str) -> str:
    """A file name as text that can be written to JSON: bytes of a non-UTF-8 name (surrogateescape) as \\xNN."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")
    return name


def read_parquet_columns(inp: Input) -> list[str]:
    import pyarrow.parquet as pq

    try:
        return list(pq.ParquetFile(inp.path).schema_arrow.names)
    except Exception as exc:  # pyarrow raises several types for a file that is not parquet
        raise R1sftError(f"{inp.label}: not a readable parquet file ({_one_line(exc)})") from None


def iter_records(inp: Input, progress, columns: list[str] | None = None, split: str = "train",
                 subset: str | None = None) -> Iterator[Record]:
    """Rows of one input, parsed here; ``progress.update(n_bytes)`` is called per block (per row for hub datasets)."""
    check = JsonlCheck(inp.label)
    index = 0
    line_base = 0
    for chunk in iter_chunks(inp, progress, columns, split, subset):
        rows, span = open_chunk(chunk)
        for data, error, detail, line in rows:
            if line is not None:
                line += line_base
                if not check.parsed:
                    check.row(error, detail, line)
            yield Record(chunk.label, index, line, data, error, detail)
            index += 1
        line_base += span[0]
    check.end()


class Chunk(NamedTuple):
    """A slice of one input, in input order, small enough to send to a worker process and parsed there.

    ``kind`` "range": ``payload`` is ``(path, start, end)``, whole JSONL lines of an uncompressed file, read by whoever
    parses them (workers read their own ranges: the main process never copies the input); "lines": whole JSONL lines
    (bytes) of a decompressed file; "arrow": a list of pyarrow record batches; "records": a list of ``(data, error,
    detail, line)`` already parsed (JSON arrays and hub rows, which are parsed in order in the main process). Line
    numbers in a chunk count from its first line; the reader of the results adds the lines of the chunks before.
    """

    kind: str
    label: str
    payload: object


LINE_KINDS = ("range", "lines")


def iter_chunks(inp: Input, progress, columns: list[str] | None = None, split: str = "train",
                subset: str | None = None) -> Iterator[Chunk]:
    """The input as chunks of about ``BLOCK_BYTES`` (``CHUNK_ROWS`` rows for parsed records), in order."""
    if inp.kind == "hub":
        yield from _record_chunks(inp.label, _iter_hub(inp, progress, split, subset))
        return
    if inp.kind == "parquet":
        yield from _parquet_chunks(inp, progress, columns)
        return
    with _open_data(inp, progress) as f:
        head = f.read(SNIFF_BYTES)
        compressed = f.kind is not None
    if head.startswith(b"PAR1"):
        yield from _parquet_chunks(inp, progress, columns)
        return
    _check_text(inp, head)
    first = head.lstrip()[:1]
    if first == b"[" and inp.kind != "jsonl":
        yield from _record_chunks(inp.label, _iter_json_array(inp, progress))
    elif first in (b"{", b"") or inp.kind == "jsonl":
        yield from (_line_chunks(inp, progress) if compressed else _range_chunks(inp, progress))
    else:
        raise R1sftError(f"{inp.label}: not JSONL, a JSON array or parquet (starts with {head[:20]!r})")


def open_chunk(chunk: Chunk) -> tuple[Iterator[tuple[dict | None, str | None, str, int | None]], list[int]]:
    """``(data, error, detail, line)`` per row of a chunk (what a worker parses), and ``[lines]``: how many lines the
    chunk spans, set once the rows have all been read."""
    span = [0]
    if chunk.kind in LINE_KINDS:
        data = chunk.payload if chunk.kind == "lines" else _read_range(*chunk.payload)
        return _parse_lines(data, span), span
    if chunk.kind == "arrow":
        return (row for batch in chunk.payload for row in _batch_rows(batch)), span
    return iter(chunk.payload), span


def _batch_rows(batch):
    for data in batch.to_pylist():
        yield data, None, "", None


def _read_range(path: str, start: int, end: int) -> bytes:
    with open(path, "rb") as f:
        data = os.pread(f.fileno(), end - start, start)
    if len(data) != end - start:
        raise R1sftError(f"{_printable(str(path))}: changed while being read (expected {end - start} bytes at "
                         f"offset {start}, got {len(data)})")
    return data[len(codecs.BOM_UTF8):] if start == 0 and data.startswith(codecs.BOM_UTF8) else data


class JsonlCheck:
    """A JSONL file in which no line parses, or whose first ``MAX_LEADING_FAILURES`` lines all fail, is not JSONL:
    a file error. Fed every row in order (until ``parsed``), by ``iter_records`` and by the pipeline alike."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.parsed = False
        self.rows = 0
        self.first_error = ""

    def row(self, error: str | None, detail: str, line: int | None) -> None:
        if error != "json_error":
            self.parsed = True
            return
        self.first_error = self.first_error or f"line {line}: {detail}"
        self.rows += 1
        if self.rows >= MAX_LEADING_FAILURES:
            raise R1sftError(f"{self.label}: not JSONL: the first {self.rows} lines do not parse as JSON "
                             f"({self.first_error})")

    def end(self) -> None:
        if not self.parsed and self.rows:
            raise R1sftError(f"{self.label}: not JSONL: no line parses as JSON ({self.first_error})")


def _record_chunks(label: str, records: Iterator[Record]) -> Iterator[Chunk]:
    rows = []
    try:
        for record in records:
            rows.append((record.data, record.error, record.detail, record.line))
            if len(rows) >= CHUNK_ROWS:
                yield Chunk("records", label, rows)
                rows = []
    except R1sftError:  # the rows before a broken element still count (a --limit may end the run before it)
        if rows:
            yield Chunk("records", label, rows)
        raise
    if rows:
        yield Chunk("records", label, rows)


def _check_text(inp: Input, head: bytes) -> None:
    """Binary data in the first line means the file is not text at all (a stray bad byte further down is a row)."""
    newline = head.find(b"\n")
    first = head if newline < 0 else head[:newline]
    nul = first.find(b"\x00")
    if nul >= 0:
        _check_compressed(inp, head)
        raise R1sftError(f"{inp.label}: binary data (NUL byte at offset {nul}); expected JSONL, a JSON array or parquet")
    try:
        first.decode("utf-8")
    except UnicodeDecodeError as exc:
        if newline >= 0 or exc.start < len(first) - 4:  # not just a character cut by the sniff window
            _check_compressed(inp, head)
            raise R1sftError(f"{inp.label}: binary data (not UTF-8 at offset {exc.start}); "
                             "expected JSONL, a JSON array or parquet") from None


def _check_compressed(inp: Input, head: bytes) -> None:
    """Name the compression of a binary file that is a compressed one we do not read, and how to undo it."""
    for magic, (kind, command) in COMPRESSED.items():
        if head.startswith(magic):
            raise R1sftError(f"{inp.label}: {kind}-compressed, which is not read directly; decompress it first "
                             f"({command} {inp.path.name}) or recompress it with gzip or zstd (.jsonl.gz and "
                             ".jsonl.zst are read)")


class _Stream:
    """A data file's bytes as the readers see them: gunzipped or un-zstd'ed when the file starts with that format's
    magic bytes (whatever its name), past a UTF-8 byte order mark. ``update`` is the progress: for a compressed file
    it reports compressed bytes, so the bar still ends at the file's size. A corrupt or truncated stream is a file
    error naming the file."""

    def __init__(self, raw, label: str, progress) -> None:
        self._raw = raw
        self._label = label
        self._progress = progress
        self._reported = 0
        magic = raw.read(4)
        raw.seek(0)
        self.kind = "gzip" if magic[:2] == GZIP_MAGIC else "zstd" if magic == ZSTD_MAGIC else None
        if self.kind == "gzip":
            self._f = gzip.GzipFile(fileobj=raw, mode="rb")
        elif self.kind == "zstd":
            self._f = _Unzstd(raw)
        else:
            self._f = raw
        head = self._call(self._f.read, len(codecs.BOM_UTF8))
        self._pending = b"" if head == codecs.BOM_UTF8 else head  # editors on Windows write one; JSON has no use

    def read(self, n: int) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data + self._call(self._f.read, n - len(data)) if n > len(data) else data
        return self._call(self._f.read, n)

    def readinto(self, buffer) -> int:
        if self._pending:
            data, self._pending = self._pending, b""
            buffer[:len(data)] = data
            return len(data)
        return self._call(self._f.readinto, buffer)

    def update(self, n: int) -> None:
        if self.kind is None:
            self._progress.update(n)
            return
        at = self._raw.tell()
        self._progress.update(at - self._reported)
        self._reported = at

    def close(self) -> None:
        if self.kind == "gzip":
            self._f.close()

    def _call(self, method, arg):
        if self.kind is None:
            return method(arg)
        try:
            return method(arg)
        except (OSError, EOFError, zlib.error, _ZstdTruncated) as exc:  # BadGzipFile is an OSError
            raise R1sftError(f"{self._label}: corrupt or truncated {self.kind} data ({_one_line(exc)})") from None
        except Exception as exc:  # zstandard.ZstdError: imported only when a zstd file is met
            if type(exc).__name__ != "ZstdError":
                raise
            raise R1sftError(f"{self._label}: corrupt or truncated zstd data ({_one_line(exc)})") from None


class _ZstdTruncated(Exception):
    pass


class _Unzstd:
    """Streaming zstd decompression (several frames, as ``zstd`` writes for concatenated files) that notices a
    truncated last frame, which ``zstandard``'s stream reader reports as a clean end of file."""

    def __init__(self, raw) -> None:
        import zstandard

        self._raw = raw
        self._new = zstandard.ZstdDecompressor().decompressobj
        self._d = self._new()
        self._fed = False  # the current frame has input not yet ended by its epilogue
        self._out = bytearray()
        self._eof = False
        self._input, self._at = b"", 0

    def read(self, n: int) -> bytes:
        while len(self._out) < n and not self._eof:
            self._fill()
        with memoryview(self._out) as view:
            data = bytes(view[:n])  # one copy
        del self._out[:n]
        return data

    def readinto(self, buffer) -> int:
        n = len(buffer)
        while len(self._out) < n and not self._eof:
            self._fill()
        n = min(n, len(self._out))
        with memoryview(self._out) as view:
            buffer[:n] = view[:n]
        del self._out[:n]
        return n

    def _fill(self) -> None:
        """Decompress the next ``ZSTD_FEED_BYTES`` of input: small pieces, so what one call returns stays small even
        for data that compresses 100x (a system prompt repeated on every row)."""
        if self._at >= len(self._input):
            self._input, self._at = self._raw.read(ZSTD_READ_BYTES), 0
            if not self._input:
                self._eof = True
                if self._fed:
                    raise _ZstdTruncated("the last frame ends early")
                return
        piece = self._input[self._at:self._at + ZSTD_FEED_BYTES]
        self._at += ZSTD_FEED_BYTES
        while piece:
            self._out += self._d.decompress(piece)
            self._fed = True
            if not self._d.eof:
                break
            piece = self._d.unused_data
            self._d = self._new()
            self._fed = False


@contextlib.contextmanager
def _open_data(inp: Input, progress):
    """The file's bytes as a ``_Stream`` (decompressed, past a byte order mark)."""
    with open(inp.path, "rb") as raw:
        f = _Stream(raw, inp.label, progress)
        try:
            yield f
        finally:
            f.close()


def _range_chunks(inp: Input, progress) -> Iterator[Chunk]:
    """Byte ranges of about ``BLOCK_BYTES``, each ending after a newline: only the bytes around each boundary are
    read here."""
    size = inp.path.stat().st_size
    start = 0
    with open(inp.path, "rb") as f:
        while start < size:
            end = min(start + BLOCK_BYTES, size)
            f.seek(end)
            while end < size:
                piece = f.read(SNIFF_BYTES)
                nl = piece.find(b"\n")
                if nl >= 0:
                    end += nl + 1
                    break
                end += len(piece)
            yield Chunk("range", inp.label, (str(inp.path), start, end))
            progress.update(end - start)
            start = end


def _line_chunks(inp: Input, progress) -> Iterator[Chunk]:
    """A decompressed file in blocks of whole lines: each block of ``BLOCK_BYTES`` is cut after its last newline and
    the rest carried into the next (the block itself is the payload: no copy of it)."""
    label = inp.label
    carry = b""
    with _open_data(inp, progress) as f:
        while True:
            buf = bytearray(len(carry) + BLOCK_BYTES)
            buf[:len(carry)] = carry
            with memoryview(buf) as view:
                n = _read_full(f, view[len(carry):])
            f.update(n)
            if not n:
                break
            total = len(carry) + n
            end = buf.rfind(b"\n", 0, total) + 1
            if not end:
                carry = bytes(buf[:total])
                continue
            carry = bytes(buf[end:total])
            del buf[end:]
            yield Chunk("lines", label, buf)
    if carry:
        yield Chunk("lines", label, carry)


def _read_full(f, view) -> int:
    """``readinto`` until ``view`` is full or the stream ends (decompressors return what one step gave)."""
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _parse_lines(block: bytes, span: list[int]):
    """Lines are found with ``bytes.find`` and handed to orjson as zero-copy memoryview slices of the block; line
    numbers count from the block's first line (1); ``span[0]`` is set to the number of lines at the end."""
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    line_no = 0
    pos, end = 0, len(block)
    with memoryview(block) as view:
        while pos < end:
            start = pos
            nl = block.find(b"\n", start)
            if nl < 0:
                nl = end
            pos = nl + 1
            line_no += 1
            if start == nl or (block[start] != 123 and block[start:nl].isspace()):  # 123: "{"
                continue
            try:
                data = loads(view[start:nl])
            except decode_error as exc:
                yield None, "json_error", _one_line(exc), line_no
                continue
            if type(data) is dict:
                yield data, None, "", line_no
            else:
                yield None, "wrong_type", f"line holds a JSON {type(data).__name__}, expected an object", line_no
    span[0] = line_no


def _iter_json_array(inp: Input, progress) -> Iterator[Record]:
    """Decode ``[obj, obj, ...]`` element by element with the stdlib's C scanner over a sliding text window.

    Bytes that are not UTF-8 are decoded with ``surrogateescape``, so one bad byte is one rejected element (the one
    whose text holds it), not a dead run; the check per element only runs once such a byte has been seen."""
    label = inp.label
    decoder = json.JSONDecoder()
    utf8_decode = codecs.utf_8_decode
    raw_decode = decoder.raw_decode
    buf = ""
    pos = 0
    eof = False
    index = 0
    pending = b""  # the start of a character cut by the block boundary
    escaped = False  # some byte so far was not UTF-8
    with _open_data(inp, progress) as f:

        def more() -> bool:
            nonlocal buf, pos, eof, pending, escaped
            if eof:
                return False
            chunk = f.read(BLOCK_BYTES)
            f.update(len(chunk))
            if not chunk:
                eof = True
            data = pending + chunk if pending else chunk
            try:
                text, used = utf8_decode(data, "strict", eof)
            except UnicodeDecodeError:
                text, used = utf8_decode(data, "surrogateescape", eof)
                escaped = True
            pending = data[used:]
            buf = buf[pos:] + text
            pos = 0
            return True

        def skip_space() -> str:
            """The next non-whitespace character ("" at end of file)."""
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    pos += 1
                if pos < len(buf):
                    return buf[pos]
                if not more():
                    return ""

        if skip_space() != "[":
            raise R1sftError(f"{label}: expected a JSON array")
        pos += 1
        if skip_space() == "]":
            pos += 1
        else:
            while True:
                while True:
                    try:
                        data, end = raw_decode(buf, pos)
                        if end < len(buf) or eof:
                            break
                    except json.JSONDecodeError as exc:
                        if eof:
                            raise R1sftError(f"{label}: element {index}: truncated or malformed JSON array "
                                             f"({exc.msg})") from None
                    more()
                start, pos = pos, end
                bad = _ESCAPED_BYTE.search(buf, start, end) if escaped else None
                if bad is not None:
                    yield Record(label, index, None, None, "json_error",
                                 f"invalid UTF-8: byte 0x{ord(bad.group()) - 0xDC00:02x} at character "
                                 f"{bad.start() - start} of the element")
                elif type(data) is dict:
                    yield Record(label, index, None, data)
                else:
                    yield Record(label, index, None, None, "wrong_type",
                                 f"array element is a JSON {type(data).__name__}, expected an object")
                index += 1
                sep = skip_space()
                if sep == ",":
                    pos += 1
                    skip_space()
                    continue
                if sep == "]":
                    pos += 1
                    break
                what = "end of file" if not sep else repr(sep)
                raise R1sftError(f"{label}: element {index}: truncated or malformed JSON array "
                                 f"(expected ',' or ']', found {what})")
        if skip_space():
            raise R1sftError(f"{label}: text after the closing ']' of the JSON array")


def _parquet_chunks(inp: Input, progress, columns: list[str] | None) -> Iterator[Chunk]:
    """Record batches grouped to about ``BLOCK_BYTES``: decoding stays here (pyarrow, in C++), turning rows into
    Python objects (``to_pylist``, the costly part) happens where the chunk is converted."""
    import pyarrow.parquet as pq

    label = inp.label
    try:
        pf = pq.ParquetFile(inp.path)
        total_rows = pf.metadata.num_rows or 1
        names = pf.schema_arrow.names
        wanted = [c for c in columns if c in names] if columns else None
        batches = pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=wanted)
    except Exception as exc:
        raise R1sftError(f"{label}: not a readable parquet file ({_one_line(exc)})") from None
    index = 0
    reported = 0
    group, size, rows = [], 0, 0
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            break
        except Exception as exc:
            if group:  # rows before the unreadable batch still count, as for a broken JSON array
                yield Chunk("arrow", label, group)
            raise R1sftError(f"{label}: row {index}: unreadable parquet data ({_one_line(exc)})") from None
        group.append(batch)
        size += batch.nbytes
        rows += batch.num_rows
        index += batch.num_rows
        done = inp.size * index // total_rows
        progress.update(done - reported)
        reported = done
        if size >= BLOCK_BYTES or rows >= CHUNK_ROWS:
            yield Chunk("arrow", label, group)
            group, size, rows = [], 0, 0
    if group:
        yield Chunk("arrow", label, group)


def _iter_hub(inp: Input, progress, split: str, subset: str | None) -> Iterator[Record]:
    hub_id = inp.label.removeprefix("hub:")
    try:
        import datasets

        dataset = datasets.load_dataset(hub_id, name=subset, split=split, streaming=True)
        rows = iter(dataset)
    except Exception as exc:
        raise R1sftError(f"{hub_id}: not a local file or folder, and loading it from the hub failed "
                         f"({_one_line(exc)})") from None
    label = f"{inp.label}[{subset + ':' if subset else ''}{split}]"
    index = 0
    while True:
        try:
            data = next(rows)
        except StopIteration:
            break
        except Exception as exc:
            raise R1sftError(f"{label}: row {index}: reading from the hub failed ({_one_line(exc)})") from None
        yield Record(label, index, None, data)
        index += 1
        progress.update(1)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] + ("..." if len(text) > 200 else "")
