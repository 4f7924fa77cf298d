"""Read a problem set: JSONL, a JSON array or parquet on disk, or a hub dataset id through ``datasets``.

Each row needs a problem (``problem`` / ``question`` / ``prompt``, or ``--problem-key``) and a reference answer
(``answer`` / ``solution`` / ``expected_answer``, or ``--answer-key``); the first name present in the first row wins.
A full solution as the answer is fine: its last ``\\boxed{}`` is the reference (GSM8K's ``#### 72`` too).
Errors name the file and the row (JSONL: the line) and column, and stop the run before any model is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from r1sft.errors import R1sftError
from r1sft.evaluate.extract import extract_gold

PROBLEM_KEYS = ("problem", "question", "prompt")
ANSWER_KEYS = ("answer", "solution", "expected_answer")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Problem:
    """One evaluation item. ``index`` is the 0-based row; ``where`` is how error messages name it."""

    index: int
    where: str
    problem: str
    answer: str
    raw_answer: object


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[str, object]]:
    import orjson

    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"line {number}", orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise R1sftError(f"{path}: line {number}: not valid JSON ({exc})") from None


def _file_rows(path: Path) -> Iterator[tuple[str, object]]:
    import orjson

    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        yield from _jsonl_rows(path, path.read_text(encoding="utf-8"))
    elif suffix == ".json":
        text = path.read_text(encoding="utf-8")
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            first = text.lstrip()[:1]
            if first == "{" and "\n" in text.strip():  # JSON Lines saved as .json (common in hub exports)
                yield from _jsonl_rows(path, text)
                return
            raise R1sftError(f"{path}: not valid JSON ({exc})") from None
        if isinstance(data, dict):
            lists = [k for k, v in data.items() if isinstance(v, list)]
            if len(lists) != 1:
                raise R1sftError(f"{path}: expected a JSON array of objects (or JSON Lines), got an object")
            data = data[lists[0]]
        if not isinstance(data, list):
            raise R1sftError(f"{path}: expected a JSON array of objects, got {type(data).__name__}")
        for number, row in enumerate(data, start=1):
            yield f"row {number}", row
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
            raise R1sftError(f"{path}: not a readable parquet file ({exc})") from None
        for number, row in enumerate(table.to_pylist(), start=1):
            yield f"row {number}", row
    else:
        raise R1sftError(f"{path}: unsupported file type {path.suffix!r}; expected .jsonl, .json or .parquet")


def _hub_rows(name: str, split: str, subset: str | None) -> Iterator[tuple[str, object]]:
    try:
        import datasets

        dataset = datasets.load_dataset(name, subset, split=split)
    except Exception as exc:  # noqa: BLE001 - offline, missing split, gated: all one message for the user
        raise R1sftError(f"{name}: not a local file, and loading it from the hub (split {split!r}) failed: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    for number, row in enumerate(dataset, start=1):
        yield f"row {number}", row


def _pick_key(columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, flag: str,
              source: str, where: str) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise R1sftError(f"{source}: {where}: no column {wanted!r} ({flag}); columns are: {', '.join(columns)}")
        return wanted
    for key in candidates:
        if key in columns:
            return key
    raise R1sftError(f"{source}: {where}: no {what} column; looked for {', '.join(candidates)}; "
                     f"columns are: {', '.join(columns) or '(none)'}; name one with {flag}")


def load_problems(source: str | Path, problem_key: str | None = None, answer_key: str | None = None,
                  limit: int | None = None, split: str = "test", subset: str | None = None) -> list[Problem]:
    """Read and validate the first ``limit`` rows (all when None) of ``source`` (a file path or a hub id)."""
    path = Path(source)
    if path.is_dir():
        raise R1sftError(f"{path}: is a folder; pass a .jsonl, .json or .parquet file")
    if path.exists():
        rows = _file_rows(path)
    elif _HUB_ID.match(str(source)) and not str(source).endswith((".jsonl", ".json", ".parquet")):
        rows = _hub_rows(str(source), split, subset)
    else:
        raise R1sftError(f"{source}: no such file")

    problems: list[Problem] = []
    p_key = a_key = None
    for index, (where, row) in enumerate(rows):
        if limit is not None and index >= limit:
            break
        if not isinstance(row, dict):
            raise R1sftError(f"{source}: {where}: expected an object with problem and answer columns, "
                             f"got {type(row).__name__}")
        if p_key is None:
            p_key = _pick_key(list(row), problem_key, PROBLEM_KEYS, "problem", "--problem-key", str(source), where)
            a_key = _pick_key(list(row), answer_key, ANSWER_KEYS, "answer", "--answer-key", str(source), where)
        problem, answer = row.get(p_key), row.get(a_key)
        if p_key not in row:
            raise R1sftError(f"{source}: {where}: column {p_key!r} is missing")
        if not isinstance(problem, str) or not problem.strip():
            raise R1sftError(f"{source}: {where}: column {p_key!r} must be a non-empty string, "
                             f"got {type(problem).__name__} {str(problem)[:40]!r}")
        if a_key not in row:
            raise R1sftError(f"{source}: {where}: column {a_key!r} is missing")
        if isinstance(answer, (list, dict)) or answer is None:
            raise R1sftError(f"{source}: {where}: column {a_key!r} must be a string or a number, "
                             f"got {type(answer).__name__}")
        gold = extract_gold(answer)
        if not gold:
            raise R1sftError(f"{source}: {where}: column {a_key!r} is empty")
        problems.append(Problem(index=index, where=where, problem=problem, answer=gold, raw_answer=answer))
    if not problems:
        raise R1sftError(f"{source}: no rows")
    return problems
