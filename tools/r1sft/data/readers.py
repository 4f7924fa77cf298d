"""Stream rows out of JSONL, JSON-array and parquet files, folders of shards, or a hub dataset.

Memory stays flat whatever the input size: JSONL is read in 8 MiB blocks split on newlines and parsed line by line
with orjson; a JSON array is decoded one element at a time (``raw_decode`` over a sliding window); parquet goes
through ``iter_batches``. Every row carries its position (file and 0-based row index, plus the 1-based line for
JSONL) so a rejected row can be found again.

Where one bad row ends and a bad file begins:
- a JSONL line or JSON array element that is not JSON (invalid UTF-8 included), or not an object, is a rejected
  row (``json_error`` / ``wrong_type``);
- a file whose first line holds NUL bytes or invalid UTF-8 is binary, not JSONL: file error;
- a JSONL file in which no line parses (or the first 100 non-blank lines all fail) is not JSONL: file error;
- a JSON array that does not parse to its closing bracket (truncated, malformed) is a file error naming the element;
- a parquet file pyarrow cannot open or read is a file error; missing columns are checked by the pipeline.

A UTF-8 byte order mark at the start of a text file is skipped; a file that starts with gzip's magic bytes is read
through gzip whatever its name (other compressions are named in the error).
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
GZIP_SUFFIXES = (".jsonl", ".ndjson", ".json")  # X.jsonl.gz and so on
SIDE_FILE_ENDINGS = (".stats.json", ".rejects.jsonl")  # what a conversion writes beside its output, never input
GZIP_MAGIC = b"\x1f\x8b"
COMPRESSED = {b"\x28\xb5\x2f\xfd": ("zstd", "zstd -d"), b"BZh": ("bzip2", "bunzip2"),
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
    return path.suffix in DATA_SUFFIXES or (path.suffix == ".gz" and Path(path.stem).suffix in GZIP_SUFFIXES)


def _absolute(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(path))


def _file_input(path: Path) -> Input:
    suffix = Path(path.stem).suffix if path.suffix == ".gz" else path.suffix
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
    """Rows of one input; ``progress.update(n_bytes)`` is called per block (per row for hub datasets)."""
    if inp.kind == "hub":
        yield from _iter_hub(inp, progress, split, subset)
        return
    if inp.kind == "parquet":
        yield from _iter_parquet(inp, progress, columns)
        return
    with _open_data(inp, progress) as (f, _):
        head = f.read(SNIFF_BYTES)
    if head.startswith(b"PAR1"):
        yield from _iter_parquet(inp, progress, columns)
        return
    _check_text(inp, head)
    first = head.lstrip()[:1]
    if first == b"[" and inp.kind != "jsonl":
        yield from _iter_json_array(inp, progress)
    elif first in (b"{", b"") or inp.kind == "jsonl":
        yield from _iter_jsonl(inp, progress)
    else:
        raise R1sftError(f"{inp.label}: not JSONL, a JSON array or parquet (starts with {head[:20]!r})")


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
                             f"({command} {inp.path.name}) or gzip it (.jsonl.gz and .json.gz are read)")


class _Gunzip:
    """A gzip file as the readers see it: ``read``/``readinto`` give the decompressed bytes, ``update`` (it is also
    the progress) reports compressed bytes so the bar still ends at the file's size, and a corrupt or truncated
    stream is a file error naming the file."""

    def __init__(self, raw, label: str, progress) -> None:
        self._raw = raw
        self._gz = gzip.GzipFile(fileobj=raw, mode="rb")
        self._label = label
        self._progress = progress
        self._reported = 0

    def read(self, n: int = -1) -> bytes:
        return self._call(self._gz.read, n)

    def readinto(self, buffer) -> int:
        return self._call(self._gz.readinto, buffer)

    def seek(self, offset: int) -> int:
        return self._call(self._gz.seek, offset)

    def update(self, _n: int) -> None:
        at = self._raw.tell()
        self._progress.update(at - self._reported)
        self._reported = at

    def close(self) -> None:
        self._gz.close()

    def _call(self, method, arg):
        try:
            return method(arg)
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; a cut stream an EOFError
            raise R1sftError(f"{self._label}: corrupt or truncated gzip data ({_one_line(exc)})") from None


@contextlib.contextmanager
def _open_data(inp: Input, progress):
    """``(file, progress)`` for a file's bytes past a UTF-8 byte order mark, read through gzip if it is gzipped."""
    with open(inp.path, "rb") as raw:
        gzipped = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        f = _Gunzip(raw, inp.label, progress) if gzipped else raw
        try:
            if f.read(len(codecs.BOM_UTF8)) != codecs.BOM_UTF8:  # editors on Windows write one; JSON has no use for it
                f.seek(0)
            yield f, (f if gzipped else progress)
        finally:
            if gzipped:
                f.close()


def _iter_jsonl(inp: Input, progress) -> Iterator[Record]:
    """Lines are found with ``bytes.find`` and handed to orjson as zero-copy memoryview slices of the block read;
    only the one line straddling two blocks is copied."""
    label = inp.label
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    row = 0
    line_no = 0
    parsed = 0
    first_error = ""
    carry = b""

    block = bytearray(BLOCK_BYTES)  # reused: no fresh 8 MiB allocation (and page faults) per read
    with _open_data(inp, progress) as (f, progress):
        while True:
            n = f.readinto(block)
            if n:
                progress.update(n)
                pos = 0
                if carry:
                    nl = block.find(b"\n", 0, n)
                    if nl < 0:
                        carry += block[:n]
                        continue
                    pieces = [(carry + block[:nl], 0, None)]
                    pos = nl + 1
                    carry = b""
                else:
                    pieces = []
                end = block.rfind(b"\n", 0, n) + 1
                if end > pos:
                    pieces.append((block, pos, end))
                    carry = bytes(block[end:n])
                else:
                    carry = bytes(block[pos:n])
            elif carry:
                pieces, carry = [(carry, 0, None)], b""
            else:
                break
            for buf, pos, stop in pieces:
                end = len(buf) if stop is None else stop
                view = memoryview(buf)
                try:
                    while pos < end:
                        start = pos
                        nl = buf.find(b"\n", start, end)
                        if nl < 0:
                            nl = end
                        pos = nl + 1
                        line_no += 1
                        if start == nl or (buf[start] != 123 and buf[start:nl].isspace()):  # 123: "{"
                            continue
                        try:
                            data = loads(view[start:nl])
                        except decode_error as exc:
                            if parsed == 0:
                                first_error = first_error or f"line {line_no}: {_one_line(exc)}"
                                if row + 1 >= MAX_LEADING_FAILURES:
                                    raise R1sftError(f"{label}: not JSONL: the first {row + 1} lines do not parse "
                                                     f"as JSON ({first_error})") from None
                            yield Record(label, row, line_no, None, "json_error", _one_line(exc))
                            row += 1
                            continue
                        parsed += 1
                        if type(data) is dict:
                            yield Record(label, row, line_no, data)
                        else:
                            yield Record(label, row, line_no, None, "wrong_type",
                                         f"line holds a JSON {type(data).__name__}, expected an object")
                        row += 1
                finally:
                    view.release()  # also when the consumer stops early (--limit): the buffer is reused
    if parsed == 0 and row > 0:
        raise R1sftError(f"{label}: not JSONL: no line parses as JSON ({first_error})")


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
    with _open_data(inp, progress) as (f, progress):

        def more() -> bool:
            nonlocal buf, pos, eof, pending, escaped
            if eof:
                return False
            chunk = f.read(BLOCK_BYTES)
            progress.update(len(chunk))
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


def _iter_parquet(inp: Input, progress, columns: list[str] | None) -> Iterator[Record]:
    import pyarrow.parquet as pq

    label = inp.label
    try:
        pf = pq.ParquetFile(inp.path)
        total_rows = pf.metadata.num_rows or 1
        names = pf.schema_arrow.names
        wanted = [c for c in columns if c in names] if columns else None
        batches = pf.iter_batches(batch_size=256, columns=wanted)
    except Exception as exc:
        raise R1sftError(f"{label}: not a readable parquet file ({_one_line(exc)})") from None
    index = 0
    reported = 0
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            break
        except Exception as exc:
            raise R1sftError(f"{label}: row {index}: unreadable parquet data ({_one_line(exc)})") from None
        for data in batch.to_pylist():
            yield Record(label, index, None, data)
            index += 1
        done = inp.size * index // total_rows
        progress.update(done - reported)
        reported = done


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
