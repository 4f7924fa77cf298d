"""The per-row work of a conversion that does not depend on other rows, done a chunk at a time.

parse -> field map -> quality -> convert (parse markup) -> reasoning required -> system policy -> render (and
serialise) -> contamination -> token length -> prompt keys. Every step is a pure function of the row, so a chunk
gives the same ``ChunkResult`` in any process: ``r1sft convert --workers N`` runs this in N processes, in order,
and the main process applies what depends on earlier rows (dedupe, --max-per-prompt, --limit) to the results in
input order. That is what makes the output byte-identical whatever N is.
"""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass
from typing import NamedTuple

import orjson

from r1sft.data.conversation import RowRejected
from r1sft.data.history import render_turns
from r1sft.data.hygiene import Decontaminator, NearHasher, QualityFilter, prompt_key
from r1sft.data.readers import LINE_KINDS, Chunk, open_chunk
from r1sft.data.reasoning import BEGIN_THOUGHT
from r1sft.data.rowformat import converted_row
from r1sft.data.shared_keys import SharedKeys
from r1sft.data.sources import get_source
from r1sft.data.system_prompts import SystemPolicy
from r1sft.data.writer import IOV_MAX

ACTIONS = ("kept", "dropped", "replaced", "empty")  # what --system did to a row's system prompt
VARIANTS = (None, "real_newlines", "literal_backslash_n")  # the R1 system prompt's byte variant, if the row had it
STRATOS_KEPT = 16  # flag bit: the written text keeps Stratos tags (--think keep), so they are special tokens
CONVERTED, REJECTED, UNREADABLE = 0, 1, 2  # ChunkResult.status per row


@dataclass(frozen=True)
class WorkSpec:
    """What a worker needs to build its converters: picklable, sent once to each worker process."""

    sources: tuple[str, ...]  # one per part of the run, by part index
    options: dict  # ConvertOptions as a dict
    field_map: dict
    keys: bool  # compute prompt keys (dedupe or --max-per-prompt)
    near: bool  # compute MinHash band keys
    lengths: bool = False  # measure answers (--max-per-prompt)
    shared_keys: str | None = None  # SharedKeys file: prompts already kept need no MinHash or decontamination


class SlotLines(NamedTuple):
    """Converted lines a worker process wrote, concatenated, into a file in /dev/shm instead of sending them back
    through a pipe: on a VM where fresh memory costs ~1 ms per MB, pickling, piping and unpickling them cost the main
    process more than writing them out does."""

    path: str
    lengths: array  # of each line, in order
    size: int

    def __len__(self) -> int:
        return len(self.lengths)


class ChunkResult(NamedTuple):
    """One chunk's rows, converted: compact arrays rather than a tuple per row, so sending them between processes
    costs little. Rows are in input order; ``status`` says per row which list holds it."""

    n: int
    n_lines: int  # lines the chunk spans (JSONL), for the line numbers of the next chunk
    lines: array | None  # JSONL line number per row, counted from the chunk's first line (others: None)
    status: bytes  # CONVERTED / REJECTED / UNREADABLE per row
    rejects: list  # per row not converted: (reason, detail, n_tokens or None, flags or None)
    missing: dict  # row index -> (missing columns, present columns), for rows without the source's columns
    out: list[bytes] | SlotLines  # per converted row: its output line (or where a worker process left them)
    flags: bytes  # per converted row: system action | R1 prompt variant << 2 | STRATOS_KEPT
    tokens: array | None  # per converted row (with --tokenizer)
    keys: array | None  # per converted row: prompt key
    bands: array | None  # near-dedupe band keys of the converted rows, concatenated
    band_counts: bytes | None  # per converted row: how many of them
    lengths: array | None  # per converted row: characters of its rendered answers (--max-per-prompt)
    columns: tuple | None = None  # the first readable row's columns, before --map (for the reasoning-column warning)


class _TooLong(RowRejected):
    def __init__(self, n_tokens: int, limit: int) -> None:
        super().__init__("too_long", f"{n_tokens} templated tokens > --max-tokens {limit}")
        self.n_tokens = n_tokens


class _Converter:
    """One part's row conversion (a source with its options), sharing the run's decontaminator and tokenizer."""

    def __init__(self, source_name: str, spec: WorkSpec, shared: dict) -> None:
        opts = spec.options
        source = get_source(source_name)
        self.convert_row = source.row_function(opts)
        self.column_sets = [frozenset(cols) for cols in source.column_sets]
        self.source = source
        self.require_reasoning = source.reasoning_required if opts["require_reasoning"] is None \
            else opts["require_reasoning"]
        self.quality = QualityFilter(source.quality_column, opts["min_quality"]) if opts["min_quality"] else None
        self.policy = SystemPolicy(opts["system"], opts["think"])
        self.think, self.split_think = opts["think"], opts["split_think"]
        self.earlier_reasoning = opts["earlier_reasoning"]
        self.max_tokens = opts["max_tokens"]
        self.decontaminator = shared["decontaminator"]
        self.counter = shared["counter"]
        self.near = shared["near"]
        self.kept = shared["kept"]
        self.keys = spec.keys

    def has_columns(self, data: dict) -> bool:
        keys = data.keys()
        return any(cols <= keys for cols in self.column_sets)

    def convert(self, data: dict):
        """(line, n_tokens, flags, prompt key, band keys, answer length), or ``RowRejected``; a reject past the system
        policy step
        carries ``flags`` (the R1 prompt counts rows converted before the hygiene filters)."""
        if self.quality is not None:
            self.quality.check(data)
        conversation = self.convert_row(data)
        if self.require_reasoning:
            last = conversation.exchanges[-1][1]
            if not last.reasoning:
                if last.reasoning is None:
                    raise RowRejected("no_thought_block", "the last reply has no reasoning block")
                raise RowRejected("empty_reasoning", "the last reply's reasoning block is empty")
        system, variant, action = self.policy.apply(conversation.system)
        flags = ACTIONS.index(action) | VARIANTS.index(variant) << 2
        try:
            return self._render(conversation, system, flags)
        except RowRejected as exc:
            exc.flags = flags
            raise

    def _render(self, conversation, system: str, flags: int):
        think = self.think
        turns = render_turns(conversation, think, self.split_think, self.earlier_reasoning)
        try:  # before the hygiene steps: they would choke on the same text with a vaguer reason
            line = orjson.dumps(converted_row(turns, system), None, orjson.OPT_APPEND_NEWLINE)
        except TypeError as exc:  # orjson.JSONEncodeError: e.g. a lone surrogate, a valid JSON escape
            raise RowRejected(*_unwritable(exc)) from None
        if think == "keep" and any(BEGIN_THOUGHT in t for t in turns[1::2]):
            flags |= STRATOS_KEPT
        prompts = conversation.prompts()
        key = prompt_key(prompts) if self.keys or self.decontaminator is not None else None
        kept = self.kept is not None and key in self.kept  # an answer of a prompt already kept (see SharedKeys)
        if self.decontaminator is not None and not kept:
            self.decontaminator.check(prompts, key)
        n_tokens = None
        if self.counter is not None:
            n_tokens = self.counter.count(system, turns)
            if self.max_tokens is not None and n_tokens > self.max_tokens:
                raise _TooLong(n_tokens, self.max_tokens)
        bands = None if self.near is None else () if kept else self.near.keys(prompts, key)
        return line, n_tokens, flags, key, bands, sum(map(len, turns[1::2]))


class RowWorker:
    """Converts chunks; one per process (or one in the main process for --workers 1)."""

    def __init__(self, spec: WorkSpec) -> None:
        opts = spec.options
        shared = {"decontaminator": Decontaminator(list(opts["decontaminate"])) if opts["decontaminate"] else None,
                  "counter": None, "near": NearHasher(opts["seed"] or 0) if spec.near else None,
                  "kept": SharedKeys(spec.shared_keys, writable=False) if spec.shared_keys else None}
        if opts["tokenizer"]:
            from r1sft.data.tokens import TokenCounter

            shared["counter"] = TokenCounter(opts["tokenizer"])
        self.spec = spec
        # rows are measured a chunk at a time after converting (one batched encode), not one by one in _Converter
        self.counter, shared["counter"] = shared["counter"], None
        self.max_tokens = opts["max_tokens"]
        self.parts = [_Converter(name, spec, shared) for name in spec.sources]

    def run(self, part: int, chunk: Chunk) -> ChunkResult:
        conv = self.parts[part]
        field_map = self.spec.field_map
        lines = array("q") if chunk.kind in LINE_KINDS else None
        rows, span = open_chunk(chunk)
        status, rejects, missing = bytearray(), [], {}
        out, flags = [], bytearray()
        tokens = None  # filled by _measured
        keys = array("Q") if self.spec.keys else None
        bands, band_counts = (array("Q"), bytearray()) if self.spec.near else (None, None)
        lengths = array("q") if self.spec.lengths else None
        columns = None
        for i, (data, error, detail, line) in enumerate(rows):
            if lines is not None:
                lines.append(line)
            if data is None:
                status.append(UNREADABLE)
                rejects.append((error, detail, None, None))
                continue
            if columns is None:
                columns = tuple(data)
            if field_map:
                for src, dst in field_map.items():
                    if src in data:
                        data[dst] = data.pop(src)
            if not conv.has_columns(data):
                missing[i] = (conv.source.missing_columns(data), list(data))
            try:
                text, n_tokens, row_flags, key, row_bands, length = conv.convert(data)
            except RowRejected as exc:
                status.append(REJECTED)
                rejects.append((exc.reason, exc.detail, getattr(exc, "n_tokens", None), getattr(exc, "flags", None)))
                continue
            except (TypeError, AttributeError, KeyError, IndexError, ValueError) as exc:
                # A shape no converter check anticipated: still one bad row, not a dead run.
                status.append(REJECTED)
                rejects.append(("malformed_row", f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}",
                                None, None))
                continue
            status.append(CONVERTED)
            out.append(text)
            flags.append(row_flags)
            if tokens is not None:
                tokens.append(n_tokens)
            if keys is not None:
                keys.append(key)
            if bands is not None:
                bands.extend(row_bands)
                band_counts.append(len(row_bands))
            if lengths is not None:
                lengths.append(length)
        result = ChunkResult(len(status), span[0], lines, bytes(status), rejects, missing, out, bytes(flags), tokens,
                             keys, bands, bytes(band_counts) if band_counts is not None else None, lengths, columns)
        return result if self.counter is None else _measured(result, self.counter, self.max_tokens)


def _measured(result: ChunkResult, counter, max_tokens: int | None) -> ChunkResult:
    """``result`` with the templated token length of each converted row (its texts read back from the written line
    and encoded in one batch), and the rows over ``max_tokens`` turned into ``too_long`` rejects, in place."""
    loads = orjson.loads
    conversations = []
    for line in result.out:
        row = loads(line)
        conversations.append((row["system"], [turn["value"] for turn in row["conversations"]]))
    counts = counter.count_many(conversations)
    del conversations
    if max_tokens is None or max(counts, default=0) <= max_tokens:
        return result._replace(tokens=array("q", counts))
    status, rejects, out, flags = bytearray(result.status), [], [], bytearray()
    tokens = array("q")
    keys = array("Q") if result.keys is not None else None
    bands, band_counts = (array("Q"), bytearray()) if result.bands is not None else (None, None)
    lengths = array("q") if result.lengths is not None else None
    old_rejects = iter(result.rejects)
    j = band_at = 0
    for i in range(result.n):
        if status[i] != CONVERTED:
            rejects.append(next(old_rejects))
            continue
        n_tokens = counts[j]
        count = result.band_counts[j] if bands is not None else 0
        if n_tokens > max_tokens:
            too_long = _TooLong(n_tokens, max_tokens)
            status[i] = REJECTED
            rejects.append((too_long.reason, too_long.detail, n_tokens, result.flags[j]))
        else:
            out.append(result.out[j])
            flags.append(result.flags[j])
            tokens.append(n_tokens)
            if keys is not None:
                keys.append(result.keys[j])
            if bands is not None:
                bands.extend(result.bands[band_at:band_at + count])
                band_counts.append(count)
            if lengths is not None:
                lengths.append(result.lengths[j])
        band_at += count
        j += 1
    return result._replace(status=bytes(status), rejects=rejects, out=out, flags=bytes(flags), tokens=tokens,
                           keys=keys, bands=bands, band_counts=bytes(band_counts) if bands is not None else None,
                           lengths=lengths)


def _unwritable(exc: TypeError) -> tuple[str, str]:
    """Reason and detail for a row the JSON encoder refuses: a lone surrogate is what JSONL input calls json_error."""
    text = " ".join(str(exc).split())[:200]
    if "surrogate" in text:
        return "json_error", "a string holds a lone surrogate (an unpaired \\uD800-\\uDFFF escape), not valid Unicode"
    return "malformed_row", text


# ---- in a worker process -------------------------------------------------------------------------------------------

_WORKER: RowWorker | None = None
_SPEC: WorkSpec | None = None


def init_process(spec: WorkSpec) -> None:
    """Pool initializer: Ctrl-C is the main process's to handle (it stops the pool and deletes the temp files); the
    worker is built on first use, so that an error building it (a bad --tokenizer) reaches the main process as the
    R1sftError it is rather than as a broken pool."""
    import signal

    global _SPEC
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _SPEC = spec


def run_in_process(part: int, chunk: Chunk, slot: str | None) -> ChunkResult:
    global _WORKER
    if _WORKER is None:
        _WORKER = RowWorker(_SPEC)
    result = _WORKER.run(part, chunk)
    if slot is None or not result.out:
        return result
    return result._replace(out=_write_slot(slot, result.out))


def _write_slot(path: str, lines: list[bytes]) -> SlotLines:
    """Overwrite the slot file (its pages stay allocated from the last use: cheaper than fresh ones)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        total = 0
        for i in range(0, len(lines), IOV_MAX):
            group = lines[i:i + IOV_MAX]
            size = sum(map(len, group))
            written = os.writev(fd, group)
            if written < size:  # short write: finish it the plain way
                os.write(fd, b"".join(group)[written:])
            total += size
        os.ftruncate(fd, total)
    finally:
        os.close(fd)
    return SlotLines(path, array("q", map(len, lines)), total)
