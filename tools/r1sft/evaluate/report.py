"""Write the report (JSON), the per-sample records (JSONL beside it) atomically, and render the markdown table."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path


def samples_path(report_path: str | Path) -> Path:
    """``out/report.json`` -> ``out/report.samples.jsonl``."""
    path = Path(report_path)
    return path.with_name(path.stem + ".samples.jsonl")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(report: Mapping, records: Iterable[Mapping], path: str | Path) -> tuple[Path, Path]:
    """Write ``records`` as JSONL, then the report JSON (which names the JSONL); returns both paths."""
    import orjson

    path = Path(path)
    samples = samples_path(path)
    _atomic_write(samples, b"".join(orjson.dumps(r) + b"\n" for r in records))
    _atomic_write(path, orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    return path, samples


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def markdown_table(report: Mapping) -> str:
    """The headline numbers as a two-column markdown table."""
    m, s = report["metrics"], report["settings"]
    rows = [
        ("model", f"`{report['model']}`"),
        ("data", f"`{report['data']}` ({m['num_problems']} problems x {s['n']} samples)"),
        ("decoding", "greedy" if s["temperature"] == 0 else f"T={s['temperature']}, top_p={s['top_p']}"),
        (f"accuracy (pass@1, mean of {s['n']})", _pct(m["accuracy"])),
        (f"pass@{s['n']}", _pct(m["pass_at_n"])),
        ("format compliance (well-formed)", _pct(m["format_compliance"])),
        ("think block closed (of opened)", _pct(m["think_closed_rate"])),
        ("answer extracted", _pct(m["answer_rate"])),
        ("stopped at end-of-turn", _pct(m["stop_rate"])),
        (f"cut off at {s['max_new_tokens']} tokens", _pct(m["truncated_rate"])),
        ("mean generated tokens", f"{m['mean_generated_tokens']:.1f}"),
    ]
    lines = ["| metric | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)
