"""Stream rows out of JSONL, JSON-array and parquet files, folders of shards, or a hub dataset.

Memory stays flat whatever the input size: JSONL is read in 8 MiB blocks split on newlines and parsed line by line
with orjson; a JSON array is decoded one element at a time (``raw_decode`` over a sliding window); parquet goes
through ``iter_batches``. Every row carries its position (file and 0-based row index, plus the 1-based line for
JSONL) so a rejected row can be found again.

Where one bad row ends and a bad file begins:
- a JSONL line that is not JSON, or not an object, is a rejected row (``json_error`` / ``wrong_type``);
- a file whose first line holds NUL bytes or invalid UTF-8 is binary, not JSONL: file error;
- a JSONL file in which no line parses (or the first 100 non-blank lines all fail) is not JSONL: file error;
- a JSON array that does not parse to its closing bracket (truncated, malformed) is a file error naming the element;
- a parquet file pyarrow cannot open or read is a file error; missing columns are checked by the pipeline.
"""

from __future__ import annotations

import codecs
import json
import os
import re
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


def resolve_inputs(specs: list[str | os.PathLike]) -> list[Input]:
    """Expand files, folders of shards (recursively, sorted) and hub ids into a list of inputs."""
    inputs: list[Input] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in DATA_SUFFIXES
                           and p.name != "dataset_info.json" and not p.name.endswith((".stats.json", ".rejects.jsonl")))
            if not files:
                raise R1sftError(f"{spec}: folder holds no .jsonl, .json or .parquet files")
            inputs.extend(_file_input(p) for p in files)
        elif path.is_file():
            inputs.append(_file_input(path))
        elif path.suffix not in DATA_SUFFIXES and _HUB_ID.match(str(spec)):
            inputs.append(Input(label=f"hub:{spec}", kind="hub"))
        else:
            raise R1sftError(f"{spec}: no such file or folder")
    return inputs


def _file_input(path: Path) -> Input:
    kind = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}.get(path.suffix, "sniff")
    return Input(label=str(path), kind=kind, path=path, size=path.stat().st_size)


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
    with open(inp.path, "rb") as f:
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
        raise R1sftError(f"{inp.label}: binary data (NUL byte at offset {nul}); expected JSONL, a JSON array or parquet")
    try:
        first.decode("utf-8")
    except UnicodeDecodeError as exc:
        if newline >= 0 or exc.start < len(first) - 4:  # not just a character cut by the sniff window
            raise R1sftError(f"{inp.label}: binary data (not UTF-8 at offset {exc.start}); "
                             "expected JSONL, a JSON array or parquet") from None


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
    with open(inp.path, "rb") as f:
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
    """Decode ``[obj, obj, ...]`` element by element with the stdlib's C scanner over a sliding text window."""
    label = inp.label
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    raw_decode = decoder.raw_decode
    buf = ""
    pos = 0
    eof = False
    index = 0
    with open(inp.path, "rb") as f:

        def more() -> bool:
            nonlocal buf, pos, eof
            if eof:
                return False
            chunk = f.read(BLOCK_BYTES)
            progress.update(len(chunk))
            try:
                text = utf8.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                raise R1sftError(f"{label}: element {index}: invalid UTF-8 ({exc.reason})") from None
            if not chunk:
                eof = True
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
                pos = end
                if type(data) is dict:
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
