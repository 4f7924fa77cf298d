"""What a conversion reports: ``<stem>.stats.json``, ``<stem>.rejects.jsonl``, the printed summary, the length plot.

The stats hold no timestamps or durations, so the same input and options give byte-identical reports; the summary
printed to the terminal carries the speed. Invariant checked before anything is written:
``rows_in == rows_out + sum(dropped.values())``.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import orjson

from r1sft.data.readers import Record

PERCENTILES = (50, 90, 99)


@dataclass
class Stats:
    source: str
    inputs: list[str]
    output: str
    name: str
    options: dict
    rows_in: int = 0
    rows_out: int = 0
    dropped: Counter = field(default_factory=Counter)
    system_prompts: dict = field(default_factory=dict)
    r1_system_prompt: dict = field(default_factory=dict)
    tokens: dict | None = None
    warnings: list[str] = field(default_factory=list)
    parts: list[dict] | None = None  # per (source, inputs) part of a run that mixes several
    dedupe: dict | None = None  # what dedupe and --max-per-prompt hold in memory at the end

    @property
    def rows_dropped(self) -> int:
        return sum(self.dropped.values())

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "inputs": self.inputs,
            "output": self.output,
            "name": self.name,
            "options": self.options,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "rows_dropped": self.rows_dropped,
            "dropped": dict(sorted(self.dropped.items())),
            "system_prompts": self.system_prompts,
            "r1_system_prompt": self.r1_system_prompt,
            "tokens": self.tokens,
            **({"parts": self.parts} if self.parts else {}),
            **({"dedupe": self.dedupe} if self.dedupe else {}),
            "warnings": self.warnings,
        }

    def summary(self) -> str:
        lines = [f"r1sft convert {self.source}: {self.rows_in} rows in, {self.rows_out} out, "
                 f"{self.rows_dropped} dropped"]
        for reason, count in sorted(self.dropped.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  dropped {count:>8}  {reason}")
        r1 = self.r1_system_prompt
        if r1.get("rows_in"):
            lines.append(f"  known R1 system prompt on {r1['rows_in']} rows ({r1['literal_backslash_n']} with literal "
                         f"\\n, {r1['real_newlines']} with newlines); policy {r1['policy']}")
        shown = ", ".join(f"{k} {v}" for k, v in self.system_prompts.items() if v)
        if shown:
            lines.append("  system prompts: " + shown)
        for part in self.parts or ():
            dropped = sum(part["dropped"].values())
            lines.append(f"  part {part['source']}: {part['rows_in']} in, {part['rows_out']} out, {dropped} dropped")
        if self.dedupe:
            lines.append(f"  dedupe memory: {self.dedupe['bytes'] / 1e6:.1f} MB")
        if self.tokens:
            t = self.tokens
            lines.append(f"  tokens ({t['tokenizer']}): p50 {t['p50']}  p90 {t['p90']}  p99 {t['p99']}  max {t['max']}"
                         + (f"  (limit {t['max_tokens']})" if t.get("max_tokens") else ""))
        return "\n".join(lines)


class RejectLog:
    """Appends one JSON line per dropped row (position, reason, detail) and counts reasons into the stats."""

    def __init__(self, handle: BinaryIO, stats: Stats) -> None:
        self.handle = handle
        self.dropped = stats.dropped
        self.buffer: list[bytes] = []
        self._json: dict[str, bytes] = {}  # file names, reasons and repeated details, JSON-encoded once

    def add(self, record: Record, reason: str, detail: str = "") -> None:
        self.add_at(record.file, record.row, record.line, reason, detail)

    def add_at(self, file: str, row: int, line: int | None, reason: str, detail: str = "") -> None:
        """The line orjson would write for ``{"file", "row", "line", "reason", "detail"}``, put together from parts
        encoded once: a dataset capped per prompt rejects most of its rows."""
        self.dropped[reason] += 1
        encoded = self._json
        f = encoded.get(file) or encoded.setdefault(file, orjson.dumps(file))
        r = encoded.get(reason) or encoded.setdefault(reason, orjson.dumps(reason))
        if detail:
            d = encoded.get(detail)
            if d is None:
                d = orjson.dumps(detail)
                if len(encoded) < 4096:  # details that name a row are all different: do not keep those
                    encoded[detail] = d
            tail = b',"reason":%b,"detail":%b}' % (r, d)
        else:
            tail = b',"reason":%b}' % r
        if line is None:
            self.buffer.append(b'{"file":%b,"row":%d%b' % (f, row, tail))
        else:
            self.buffer.append(b'{"file":%b,"row":%d,"line":%d%b' % (f, row, line, tail))
        if len(self.buffer) >= 4096:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.handle.write(b"\n".join(self.buffer) + b"\n")
            self.buffer.clear()


class LengthReport:
    """Templated token lengths of the rows measured: percentiles for the stats, a histogram PNG."""

    def __init__(self, tokenizer: str, max_tokens: int | None) -> None:
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.kept = array("q")
        self.too_long = array("q")

    def summary(self) -> dict:
        kept = sorted(self.kept)
        result = {"tokenizer": self.tokenizer, "max_tokens": self.max_tokens, "rows": len(kept),
                  "too_long": len(self.too_long)}
        for q in PERCENTILES:
            result[f"p{q}"] = _nearest_rank(kept, q)
        result["max"] = kept[-1] if kept else None
        result["mean"] = round(sum(kept) / len(kept), 1) if kept else None
        result["total"] = sum(kept)
        return result

    def plot_png(self) -> bytes:
        import io

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
        values = [*self.kept, *self.too_long]
        if values:
            ax.hist([list(self.kept), list(self.too_long)], bins=50, stacked=True,
                    label=["kept", "dropped: too long"], color=["#4477aa", "#cc6677"])
        if self.max_tokens:
            ax.axvline(self.max_tokens, color="black", linestyle="--", linewidth=1, label=f"--max-tokens {self.max_tokens}")
        ax.set_xlabel(f"templated tokens ({self.tokenizer})")
        ax.set_ylabel("rows")
        ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        out = io.BytesIO()
        fig.savefig(out, format="png", metadata={"Software": None})
        plt.close(fig)
        return out.getvalue()


def _nearest_rank(sorted_values, q: int) -> int | None:
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(q / 100 * len(sorted_values)) - 1)]


def stats_bytes(stats: Stats) -> bytes:
    return orjson.dumps(stats.to_json(), option=orjson.OPT_INDENT_2) + b"\n"


def side_files(output: Path) -> dict[str, Path]:
    stem = output.with_suffix("") if output.suffix == ".jsonl" else output
    return {
        "stats": stem.with_name(stem.name + ".stats.json"),
        "rejects": stem.with_name(stem.name + ".rejects.jsonl"),
        "lengths": stem.with_name(stem.name + ".lengths.png"),
    }
