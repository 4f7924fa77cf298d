"""``convert``: stream rows from the inputs through a source converter, the hygiene filters and the renderer into
r1sft's ShareGPT JSONL, then register it and write the stats and rejects beside it.

Order of the per-row steps, cheapest first, and so that the row a duplicate is compared against is one that was
actually kept: read -> field map -> quality -> convert (parse markup) -> reasoning required -> system policy ->
render (and serialise) -> contamination -> token length -> exact/near dedupe -> --max-per-prompt -> limit. The
steps up to the token length depend on the row alone (``rowwork.py``) and run a chunk at a time, in ``--workers``
processes; the rest depends on the rows before and runs here, on the results in input order, so the output is the
same whatever the number of workers. Every row read ends either in the output or in the rejects file with a reason.
Nothing is visible until the end: outputs go to temp files that are renamed into place together,
``dataset_info.json`` last, under a folder lock; SIGTERM, Ctrl-C and OS errors clean them up as well.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import re
import signal
import sys
import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from r1sft.data.atomic import AtomicFiles
from r1sft.data.conversation import RowRejected
from r1sft.data.hygiene import PromptCap, PromptIndex
from r1sft.data.options import ConvertOptions, available_cores, check_options, recorded_options
from r1sft.data.parallel import Work, convert_chunks
from r1sft.data.readers import Input, JsonlCheck, Record, iter_chunks, read_parquet_columns, resolve_inputs
from r1sft.data.reasoning import SPECIAL_TOKENS, STRATOS_TOKENS
from r1sft.data.registry import DATASET_INFO, check_dataset_info, folder_lock, updated_dataset_info
from r1sft.data.report import LengthReport, RejectLog, Stats, side_files, stats_bytes
from r1sft.data.rowformat import sharegpt_entry
from r1sft.data.rowwork import (
    ACTIONS,
    CONVERTED,
    STRATOS_KEPT,
    UNREADABLE,
    VARIANTS,
    ChunkResult,
    SlotLines,
    WorkSpec,
)
from r1sft.data.sampling import SeededSample
from r1sft.data.shared_keys import SharedKeys
from r1sft.data.sources import Source, get_source, parse_field_map
from r1sft.data.system_prompts import SystemPolicy
from r1sft.data.writer import LineWriter, Spool
from r1sft.errors import R1sftError

__all__ = ["ConvertOptions", "convert", "convert_many"]

_NOT_CONVERTED = re.compile(b"[^\\x00]")  # ChunkResult.status of a row that is not CONVERTED
# Column names that hold a chain of thought in some dataset: warned about when nothing reads them.
REASONING_LIKE = frozenset(("reasoning", "reasoning_content", "thinking", "think", "thought", "thoughts", "cot",
                            "chain_of_thought", "rationale", "deepseek_reasoning", "deepseek_thinking_trajectory",
                            "thinking_trajectory", "thinking_trajectories", "reasoning_trace", "scratchpad"))
MAX_LEADING_COLUMN_MISSES = 20  # rows in a row without the columns before the file counts as wrong
PARALLEL_MIN_BYTES = 64 << 20  # by default, smaller inputs are converted in this process: starting workers costs more
# Tokenizing (--tokenizer) costs ~3-4 MB/s of input per core, so workers pay for themselves from a few MB.
PARALLEL_MIN_BYTES_TOKENIZED = 8 << 20


def convert(source: str, inputs, output, options: ConvertOptions | None = None, **overrides) -> Stats:
    """Convert ``inputs`` (paths, folders or hub ids; one or a list) of dataset ``source`` into ``output`` (.jsonl).

    >>> stats = convert("bespoke-stratos", "stratos.parquet", "data/stratos.jsonl", think="native", dedupe="exact")
    """
    return convert_many([(source, inputs)], output, options, **overrides)


def convert_many(parts, output, options: ConvertOptions | None = None, **overrides) -> Stats:
    """Like ``convert`` for several (source, inputs) parts written, in order, into one output file; the stats count
    each part's rows too (``Stats.parts``)."""
    opts = replace(options or ConvertOptions(), **overrides)
    output = Path(output)
    if output.suffix != ".jsonl":
        raise R1sftError(f"--output {output}: expected a .jsonl file")
    if output.is_dir():
        raise R1sftError(f"--output {output}: is a folder; expected a .jsonl file path")
    parts = list(parts)
    check_options(opts, [source_name for source_name, _ in parts])
    field_map = parse_field_map(opts.field_map)
    plan = []
    own_files = [output, *side_files(output).values()]
    skipped: list[Path] = []
    for source_name, inputs in parts:
        source = get_source(source_name)
        if source.needs_field_map and not field_map:
            raise R1sftError(f"source {source_name!r} needs --map SOURCE_COLUMN=TARGET_COLUMN[,...] "
                             "(targets: instruction, input, output, system, history, reasoning)")
        if opts.min_quality and not source.quality_column:
            raise R1sftError(f"--min-quality: source {source_name!r} has no quality column")
        if inputs is None or inputs == [] or inputs == ():
            if not source.hub_id:
                raise R1sftError(f"source {source_name!r}: give --input (it has no default hub dataset)")
            inputs = [source.hub_id]
        elif isinstance(inputs, str | Path):
            inputs = [inputs]
        plan.append((source_name, source, resolve_inputs(list(inputs), exclude=own_files, skipped=skipped)))
    folder = output.parent
    name = opts.name or output.stem
    check_dataset_info(folder)
    conversion = _Conversion(plan, output, name, opts, field_map)
    conversion.stats.warnings.extend(f"skipped {p} in an input folder: it is this run's own output" for p in skipped)
    return conversion.run()


def _workers(opts: ConvertOptions, plan) -> int:
    if opts.workers is not None:
        return opts.workers
    total = sum(i.size for p in plan for i in p[2])
    least = PARALLEL_MIN_BYTES_TOKENIZED if opts.tokenizer else PARALLEL_MIN_BYTES
    return available_cores() if total >= least else 1


class _Progress:
    """tqdm by bytes on stderr, or nothing."""

    def __init__(self, total: int, enabled: bool | None) -> None:
        self.bar = None
        if enabled is None:
            enabled = sys.stderr.isatty()
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total or None, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                            desc="convert", dynamic_ncols=True)

    def update(self, n: int) -> None:
        if self.bar is not None and n:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _LimitReached(Exception):
    pass


class _RejectLog(RejectLog):
    """The rejects file, safe for any detail: one quoting a lone surrogate from the input would make the JSON encoder
    fail, and a reject must never kill the run."""

    def add_at(self, file: str, row: int, line: int | None, reason: str, detail: str = "") -> None:
        if not detail.isascii():
            detail = detail.encode("utf-8", "backslashreplace").decode("utf-8")  # valid text is left as it was
        super().add_at(file, row, line, reason, detail)


@contextlib.contextmanager
def _sigterm_raises():
    """For the run, SIGTERM (a scheduler's kill, ``timeout``) raises SystemExit(143) instead of ending the process on
    the spot, so the cleanup below deletes the hidden temp files. Only the main thread may set handlers, and only the
    default action is replaced: a caller's own handler (or SIG_IGN) stays in charge."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def terminated(signum, _frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _os_error(exc: OSError, output: Path) -> R1sftError:
    """An OS error as one line naming the path: an input that cannot be read, or else the output (a failed write
    such as a full disk names no file; a temp file or missing folder is named by the output it was for)."""
    why = exc.strerror or " ".join(str(exc).split())
    if exc.filename is not None:
        path = Path(os.path.abspath(exc.filename))
        folder = Path(os.path.abspath(output.parent))
        if path.parent != folder and not folder.is_relative_to(path):
            return R1sftError(f"{exc.filename}: cannot read ({why})")
        if isinstance(exc, FileExistsError) and folder.is_relative_to(path):  # mkdir met a file on the way
            why = f"{exc.filename} is a file, not a folder"
        elif path.parent != folder:  # the folder (or one above it), not a temp file in it
            why = f"{why}: {exc.filename}"
    return R1sftError(f"--output {output}: cannot write ({why})")


class _InputStart(NamedTuple):
    part: int
    inp: Input


class _InputEnd(NamedTuple):
    pass


class _ReadFailed(NamedTuple):
    """An error met while reading ahead, raised when the rows before it have been handled (a --limit may end the
    run first, as it would have without reading ahead)."""

    error: BaseException


class _InputState:
    """What the main process tracks per input while its chunks' results come back."""

    def __init__(self, part: int, source_name: str, source: Source, inp: Input, checked: bool, misses_before: int):
        self.part = part
        self.source_name = source_name
        self.source = source
        self.inp = inp
        self.label = inp.label
        self.rows = 0
        self.line_base = 0  # lines of the chunks before (JSONL): a chunk's line numbers count from its first line
        self.checked = checked  # some row had the source's columns (or the parquet schema has them)
        self.first_miss = None  # (row, columns present) of the first row without them
        self.misses_before = misses_before
        self.jsonl = None  # JsonlCheck, for the first chunk of lines
        self.columns_seen = False  # the reasoning-column check has looked at this input's columns


class _Conversion:
    def __init__(self, plan, output: Path, name: str, opts: ConvertOptions, field_map: dict[str, str]) -> None:
        self.plan = plan
        self.output = output
        self.name = name
        self.opts = opts
        self.field_map = field_map
        self.workers = _workers(opts, plan)
        self.policy = SystemPolicy(opts.system, opts.think)
        self.index = PromptIndex(opts.dedupe == "near", opts.max_per_prompt is not None, self._where) \
            if opts.dedupe else None
        self.cap = PromptCap(opts.max_per_prompt) if opts.max_per_prompt else None
        self.lengths = LengthReport(opts.tokenizer, opts.max_tokens) if opts.tokenizer else None
        self.sample = SeededSample(opts.limit, opts.seed) if opts.limit and opts.seed is not None else None
        # every converted row is written as it comes: nothing depends on the rows before
        self.streaming = self.index is None and self.cap is None and opts.limit is None
        self.reasoning_warned = False
        self.keeps_stratos_markup = False  # --think keep wrote Stratos tags: record their special tokens
        self.system_counts: Counter = Counter()
        self.r1_counts: Counter = Counter()  # written rows that carried the R1 prompt, per byte variant
        self.r1_seen: Counter = Counter()  # converted rows that carried it (before hygiene filters)
        self.starts: list[int] = []  # ordinal of each input's first row, for "file row N" from an ordinal
        self.labels: list[str] = []
        self.state: _InputState | None = None
        self._slot_buffer: bytearray | None = None
        self.parts = [{"source": p[0], "inputs": [i.label for i in p[2]], "rows_in": 0, "rows_out": 0,
                       "dropped": Counter()} for p in plan]
        self.several_parts = len(plan) > 1
        k = opts.max_per_prompt
        self.cap_detail = f"the prompt has {k} shorter or earlier answer(s) (--max-per-prompt {k})"
        self.stats = Stats(source="+".join(p[0] for p in plan), inputs=[i.label for p in plan for i in p[2]],
                           output=str(output), name=name, options=recorded_options(opts, field_map))
        # with workers, the prompts kept so far spare them MinHash and decontamination work (a hint: see SharedKeys)
        hashing = opts.dedupe == "near" or bool(opts.decontaminate)
        self.shared = SharedKeys.create() if self.workers > 1 and hashing and (self.index or self.cap) else None
        for keeper in (self.index, self.cap):
            if keeper is not None:
                keeper.shared = self.shared
        self.spec = WorkSpec(sources=tuple(p[0] for p in plan), options=vars(opts).copy(), field_map=field_map,
                             keys=bool(opts.dedupe or opts.max_per_prompt), near=opts.dedupe == "near",
                             lengths=bool(opts.max_per_prompt),
                             shared_keys=self.shared.path if self.shared is not None else None)

    # -- the run -----------------------------------------------------------------------------------------------------

    def run(self) -> Stats:
        with _sigterm_raises():
            try:
                return self._run()
            except OSError as exc:
                raise _os_error(exc, self.output) from None

    def _run(self) -> Stats:
        sides = side_files(self.output)
        files = AtomicFiles()
        progress = _Progress(sum(i.size for p in self.plan for i in p[2]), self.opts.progress)
        self.spool = None
        try:
            self.out = LineWriter(files.open(self.output))
            self.rejects = _RejectLog(files.open(sides["rejects"]), self.stats)
            if self.cap is not None:
                self.spool = Spool(self.output.parent, self.lengths is not None)
            self._convert_all(progress)
            if self.sample is not None:
                for _record, line, n_tokens, flags, part in self.sample.items_in_source_order():
                    self._write(line, n_tokens, flags, part)
            if self.spool is not None:
                for line, n_tokens, flags, part in self.spool.survivors():
                    self._write(line, n_tokens, flags, part)
            self.out.flush()
            self.rejects.flush()
            progress.close()
            self._finish_stats()
            self._commit(files, sides)
        except BaseException:
            progress.close()
            files.abort()
            raise
        finally:
            if self.spool is not None:
                self.spool.close()
            if self.shared is not None:
                self.shared.close(remove=True)
        return self.stats

    def _convert_all(self, progress) -> None:
        try:
            for item in convert_chunks(self._items(progress), self.spec, self.workers):
                if type(item) is ChunkResult:
                    self._consume(item)
                elif type(item) is _InputStart:
                    self._start_input(item)
                elif type(item) is _InputEnd:
                    self._end_input()
                else:
                    raise item.error
        except _LimitReached:
            pass

    def _items(self, progress):
        """The work, in order: each input's start, its chunks, its end; an error while reading, deferred."""
        opts = self.opts
        try:
            for part, (_, source, inputs) in enumerate(self.plan):
                columns = sorted(self._needed_columns(source))
                subset = opts.subset if opts.subset is not None else source.hub_subset
                for inp in inputs:
                    yield _InputStart(part, inp)
                    for chunk in iter_chunks(inp, progress, columns=columns, split=opts.split, subset=subset):
                        yield Work((part, chunk))
                    yield _InputEnd()
        except (R1sftError, OSError) as exc:
            yield _ReadFailed(exc)

    def _needed_columns(self, source: Source) -> set[str]:
        needed = source.columns() | ({source.quality_column} if self.opts.min_quality else set())
        return needed | {src for src, dst in self.field_map.items() if dst in needed}

    def _commit(self, files: AtomicFiles, sides: dict) -> None:
        files.write_bytes(sides["stats"], stats_bytes(self.stats))
        if self.lengths is not None:
            files.write_bytes(sides["lengths"], self.lengths.plot_png())
        folder = self.output.parent
        with folder_lock(folder):
            if self.opts.register:
                files.write_bytes(folder / DATASET_INFO, updated_dataset_info(folder, self.name, self._entry()))
            files.commit()
            if self.lengths is None and sides["lengths"].is_file():
                sides["lengths"].unlink()  # an earlier run's plot (with --tokenizer) no longer describes OUT

    # -- per input ---------------------------------------------------------------------------------------------------

    def _start_input(self, item: _InputStart) -> None:
        source_name, source, _ = self.plan[item.part]
        inp = item.inp
        checked = False
        self.state = _InputState(item.part, source_name, source, inp, checked, self.stats.dropped["missing_field"])
        if inp.kind == "parquet":
            columns = read_parquet_columns(inp)
            self._check_columns(source_name, source, inp, columns, None)
            self.state.checked = self.state.columns_seen = True
            self._unread_reasoning(columns)
        self.starts.append(self.stats.rows_in)
        self.labels.append(inp.label)

    def _end_input(self) -> None:
        state = self.state
        if state.jsonl is not None:
            state.jsonl.end()
        if not state.checked and state.first_miss is not None:  # no row of this file has the columns: wrong file
            self._check_columns(state.source_name, state.source, state.inp, state.first_miss[1],
                                state.first_miss[0])

    def _unread_reasoning(self, columns) -> None:
        """Warn (once per run) about columns that look like a chain of thought which nothing reads: without it the
        data trains answers only."""
        source, field_map = self.state.source, self.field_map
        read = source.columns() | set(field_map)
        unread = [c for c in columns if c.lower() in REASONING_LIKE and c not in read]
        if not unread or self.reasoning_warned:
            return
        self.reasoning_warned = True
        hint = f"; add {unread[0]}=reasoning to --map to train on it" if "reasoning" in source.optional_columns \
            else ""
        self.stats.warnings.append(f"{self.state.label}: column(s) {', '.join(unread)} look like a chain of thought "
                                   f"but source {self.state.source_name!r} does not read them{hint}")

    def _check_columns(self, source_name: str, source: Source, inp: Input, present, row: int | None) -> None:
        present = list(present)
        if self.field_map and row is None:  # parquet schema: apply the rename to the column names
            present = [self.field_map.get(c, c) for c in present]
        missing = source.missing_columns(present)
        unknown = [src for src, dst in self.field_map.items() if missing and dst in missing]
        if unknown:  # the map's source column is not in the file (a typo): name it, not the target it fills
            back = {dst: src for src, dst in self.field_map.items()}
            found = sorted(back.get(c, c) for c in present)
            where = f"row {row}: " if row is not None else ""
            raise R1sftError(f"--map {','.join(f'{s}={self.field_map[s]}' for s in unknown)}: {inp.label}: {where}"
                             f"no column {', '.join(map(repr, unknown))}; the file has: {', '.join(found) or 'none'}")
        if missing:
            where = f"row {row}: " if row is not None else ""
            raise R1sftError(f"{inp.label}: {where}missing column(s) {', '.join(missing)} required by source "
                             f"{source_name!r} (found: {', '.join(present) or 'none'})")

    def _where(self, ordinal: int) -> str:
        i = bisect.bisect_right(self.starts, ordinal) - 1
        return f"{self.labels[i]} row {ordinal - self.starts[i]}"

    # -- per row, in input order ---------------------------------------------------------------------------------------

    def _consume(self, result: ChunkResult) -> None:
        """The rows of one chunk: bookkeeping, the file-level checks, then what depends on earlier rows."""
        state = self.state
        if not state.columns_seen and result.columns is not None:
            state.columns_seen = True
            self._unread_reasoning(result.columns)
        if self.streaming and state.checked and (state.jsonl is None or state.jsonl.parsed or result.lines is None):
            self._consume_whole(result)
            return
        stats = self.stats
        part = self.parts[state.part]
        lines, status, out = result.lines, result.status, result.out
        if type(out) is SlotLines:
            out = self._slot_lines(out)
        rejects = iter(result.rejects)
        if lines is not None and state.jsonl is None:
            state.jsonl = JsonlCheck(state.label)
        jsonl = state.jsonl
        j = band_at = 0
        text = None
        for i in range(result.n):
            row = state.rows
            state.rows += 1
            ordinal = stats.rows_in
            stats.rows_in += 1
            part["rows_in"] += 1
            line = lines[i] + state.line_base if lines is not None else None
            s = status[i]
            if s == CONVERTED:
                text = out[j]
                bands = None
                if result.bands is not None:
                    count = result.band_counts[j]
                    bands, band_at = result.bands[band_at:band_at + count], band_at + count
                converted, j = j, j + 1
                outcome = None
            else:
                outcome = next(rejects)
            if jsonl is not None and not jsonl.parsed:
                jsonl.row(outcome[0] if s == UNREADABLE else None, outcome[1] if s == UNREADABLE else "", line)
            if s == UNREADABLE:
                self._reject(state.label, row, line, outcome[0], outcome[1])
                continue
            if not state.checked and self._missing_columns(result, i, row, line):
                continue
            if outcome is not None:
                self._rejected(row, line, outcome)
                continue
            self._converted(result, converted, text, bands, ordinal, row, line)
        state.line_base += result.n_lines
        if type(result.out) is SlotLines:  # the lines are views of the slot buffer, which the next chunk reuses
            del out, text
            self.out.flush()
            if self.spool is not None:
                self.spool.writer.flush()

    def _slot_lines(self, slot: SlotLines) -> list:
        """A worker's lines, read into one buffer reused from chunk to chunk (fresh memory is what costs)."""
        buffer = self._slot_buffer
        if buffer is None or len(buffer) < slot.size:
            buffer = self._slot_buffer = bytearray(slot.size + (slot.size >> 3))
        view = memoryview(buffer)
        with open(slot.path, "rb") as f:
            if os.readv(f.fileno(), [view[:slot.size]]) != slot.size:
                raise OSError(f"{slot.path}: shorter than the {slot.size} bytes a worker wrote")
        lines, at = [], 0
        for length in slot.lengths:
            lines.append(view[at:at + length])
            at += length
        return lines

    def _consume_whole(self, result: ChunkResult) -> None:
        """A chunk whose every converted row is written (no filter depends on earlier rows, the file checks are
        done): its converted lines go out as the one block they came in, counted in bulk; only rejects are looked
        at one by one."""
        state, stats = self.state, self.stats
        part = self.parts[state.part]
        first_row = state.rows
        state.rows += result.n
        stats.rows_in += result.n
        part["rows_in"] += result.n
        if result.rejects:
            status, lines, rejects = result.status, result.lines, iter(result.rejects)
            for found in _NOT_CONVERTED.finditer(status):
                i = found.start()
                outcome = next(rejects)
                line = lines[i] + state.line_base if lines is not None else None
                if status[i] == UNREADABLE:
                    self._reject(state.label, first_row + i, line, outcome[0], outcome[1])
                else:
                    self._rejected(first_row + i, line, outcome)
        converted = len(result.out)
        if converted:
            for flags, count in Counter(result.flags).items():
                self._count_written(flags, count)
                if flags >> 2 & 3:
                    self.r1_seen[VARIANTS[flags >> 2 & 3]] += count
            stats.rows_out += converted
            part["rows_out"] += converted
            if result.tokens is not None:
                self.lengths.kept.extend(result.tokens)
            if type(result.out) is SlotLines:
                self.out.write_file(result.out.path, result.out.size)
            else:
                self.out.write_lines(result.out)
        state.line_base += result.n_lines

    def _missing_columns(self, result: ChunkResult, i: int, row: int, line: int | None) -> bool:
        """Until one row of the input has the source's columns, rows without them may mean a wrong file: counted, and
        after ``MAX_LEADING_COLUMN_MISSES`` of them a file error. True when row ``i`` is such a row (rejected)."""
        state = self.state
        miss = result.missing.get(i)
        if miss is None:
            state.checked = True
            return False
        state.first_miss = state.first_miss or (row, miss[1])
        self._reject(state.label, row, line, "missing_field", f"missing column(s) {', '.join(miss[0])}")
        if self.stats.dropped["missing_field"] >= state.misses_before + MAX_LEADING_COLUMN_MISSES:
            self._check_columns(state.source_name, state.source, state.inp, state.first_miss[1], state.first_miss[0])
        return True

    def _rejected(self, row: int, line: int | None, outcome: tuple) -> None:
        reason, detail, n_tokens, flags = outcome
        if flags is not None and flags >> 2 & 3:  # converted before this filter, with the R1 prompt
            self.r1_seen[VARIANTS[flags >> 2 & 3]] += 1
        if n_tokens is not None:
            self.lengths.too_long.append(n_tokens)
        self._reject(self.state.label, row, line, reason, detail)

    def _converted(self, result: ChunkResult, j: int, text, bands, ordinal: int, row: int, line: int | None) -> None:
        """A row converted by a worker: dedupe, the per-prompt cap, the sample or the limit decide the rest."""
        flags = result.flags[j]
        variant = flags >> 2 & 3
        if variant:
            self.r1_seen[VARIANTS[variant]] += 1
        n_tokens = result.tokens[j] if result.tokens is not None else None
        key = result.keys[j] if result.keys is not None else None
        state = self.state
        if self.index is not None:
            try:
                self.index.check(key, bands)
            except RowRejected as exc:
                self._reject(state.label, row, line, exc.reason, exc.detail)
                return
        if self.cap is not None:
            self._offer(key, result.lengths[j], text, n_tokens, flags, bands, ordinal, row, line)
            return
        if self.index is not None:
            self.index.add(key, bands, ordinal)
        if self.sample is not None:
            item = (Record(state.label, row, line, None), bytes(text), n_tokens, flags, state.part)
            pushed = self.sample.offer(state.label, row, item)
            if pushed is not None:
                self._reject(pushed[0].file, pushed[0].row, pushed[0].line, "not_sampled",
                             f"--limit {self.opts.limit} --seed {self.opts.seed}", pushed[4])
            return
        self._write(text, n_tokens, flags, state.part)
        if self.opts.limit is not None and self.stats.rows_out >= self.opts.limit:
            raise _LimitReached

    def _offer(self, key: int, length: int, text, n_tokens, flags: int, bands, ordinal: int, row: int,
               line: int | None) -> None:
        """--max-per-prompt: the row waits in the spool if its answer is among the K shortest of its prompt so far; a
        row it pushes out of the K is marked there and rejected now."""
        state = self.state
        spool = self.spool
        ref = (spool.count, state.label, row, line, state.part)  # the spool index it will get
        kept, pushed_out = self.cap.offer(key, length, ordinal, ref)
        if not kept:
            self._reject(state.label, row, line, "max_per_prompt", self.cap_detail)
            return
        if self.index is not None:
            self.index.add(key, bands, ordinal)
        if pushed_out is not None:
            index, label, old_row, old_line, old_part = pushed_out
            spool.drop(index)
            self._reject(label, old_row, old_line, "max_per_prompt",
                         f"pushed out by a shorter answer of the same prompt, {state.label} row {row} "
                         f"(--max-per-prompt {self.opts.max_per_prompt})", old_part)
        spool.add(text, n_tokens, flags, state.part)

    def _reject(self, label: str, row: int, line: int | None, reason: str, detail: str, part: int | None = None):
        self.rejects.add_at(label, row, line, reason, detail)
        if self.several_parts:  # one part: its counts are the run's (Stats.dropped)
            self.parts[self.state.part if part is None else part]["dropped"][reason] += 1

    # -- output --------------------------------------------------------------------------------------------------------

    def _write(self, line, n_tokens: int | None, flags: int, part: int) -> None:
        self.stats.rows_out += 1
        self.parts[part]["rows_out"] += 1
        self._count_written(flags, 1)
        if n_tokens is not None:
            self.lengths.kept.append(n_tokens)
        self.out.write(line)

    def _count_written(self, flags: int, count: int) -> None:
        self.system_counts[ACTIONS[flags & 3]] += count
        if flags >> 2 & 3:
            self.r1_counts[VARIANTS[flags >> 2 & 3]] += count
        if flags & STRATOS_KEPT:
            self.keeps_stratos_markup = True

    def _finish_stats(self) -> None:
        stats = self.stats
        if stats.rows_in != stats.rows_out + stats.rows_dropped:
            raise AssertionError(f"row accounting broke: {stats.rows_in} in != {stats.rows_out} out + "
                                 f"{stats.rows_dropped} dropped")
        stats.system_prompts = {k: self.system_counts[k] for k in ACTIONS}
        stats.r1_system_prompt = {
            "rows_in": sum(self.r1_seen.values()),
            "rows_out": sum(self.r1_counts.values()),
            "real_newlines": self.r1_seen["real_newlines"],
            "literal_backslash_n": self.r1_seen["literal_backslash_n"],
            "policy": self.policy.describe(),
        }
        if self.lengths is not None:
            stats.tokens = self.lengths.summary()
        if len(self.parts) > 1:
            stats.parts = [dict(p, dropped=dict(sorted(p["dropped"].items()))) for p in self.parts]
        if self.index is not None or self.cap is not None:
            stats.dedupe = {}
            if self.index is not None:
                stats.dedupe["index"] = self.index.memory()
            if self.cap is not None:
                stats.dedupe["max_per_prompt"] = self.cap.memory()
            stats.dedupe["bytes"] = sum(v["bytes"] for v in stats.dedupe.values())
        if stats.rows_out == 0:
            self._empty()

    def _empty(self) -> None:
        """No rows to write: an error (before anything is written) unless --allow-empty, since LLaMA-Factory
        cannot train on an empty dataset and would only fail at launch."""
        stats = self.stats
        if stats.rows_in == 0:
            why = f"no rows in {', '.join(stats.inputs)}"
        else:
            top = ", ".join(f"{r} {n}" for r, n in stats.dropped.most_common(3))
            why = f"every row was dropped ({stats.rows_in} rows: {top})"
        if not self.opts.allow_empty:
            raise R1sftError(f"{why}: nothing written, LLaMA-Factory cannot train on an empty dataset "
                             f"(--allow-empty writes it anyway{', with the rejects file' if stats.rows_in else ''})")
        stats.warnings.append(f"{why}: wrote an empty dataset (LLaMA-Factory cannot train on it)"
                              + ("; see the rejects file" if stats.rows_in else ""))

    def _entry(self) -> dict:
        opts = self.opts
        meta = {
            "source": self.stats.source,
            "think": opts.think,
            "split_think": opts.split_think,
            "system": self.policy.describe(),
            "special_tokens": list(STRATOS_TOKENS) if self.keeps_stratos_markup else list(SPECIAL_TOKENS.get(opts.think, [])),
            "rows": self.stats.rows_out,
        }
        if opts.earlier_reasoning != "drop":  # absent: dropped (recipe/data.py reads it)
            meta["earlier_reasoning"] = opts.earlier_reasoning
        if opts.max_tokens:
            meta["max_tokens"] = opts.max_tokens
            meta["tokenizer"] = _portable(opts.tokenizer)
        mean = (self.stats.tokens or {}).get("mean")
        if mean:  # measured with the tokenizer: what `r1sft recipe --packing` sizes its packs from
            meta["mean_tokens"] = mean
        return sharegpt_entry(self.output.name, meta)


def _portable(tokenizer: str) -> str:
    """A tokenizer folder inside the project is recorded relative to it, so dataset_info.json is the same anywhere."""
    from r1sft.paths import REPO_ROOT

    path = Path(tokenizer).resolve()
    return str(path.relative_to(REPO_ROOT)) if path.exists() and path.is_relative_to(REPO_ROOT) else tokenizer
