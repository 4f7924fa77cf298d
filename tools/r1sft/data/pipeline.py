"""``convert``: stream rows from the inputs through a source converter, the hygiene filters and the renderer into
r1sft's ShareGPT JSONL, then register it and write the stats and rejects beside it.

Order of the per-row steps, cheapest first, and so that the row a duplicate is compared against is one that was
actually kept: read -> field map -> quality -> convert (parse markup) -> reasoning required -> system policy ->
render (and serialise) -> contamination -> token length -> exact/near dedupe -> limit. Every row read ends either in the output or
in the rejects file with a reason. Nothing is visible until the end: outputs go to temp files that are renamed into
place together, ``dataset_info.json`` last, under a folder lock; SIGTERM and OS errors clean them up as well.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import orjson

from r1sft.data.atomic import AtomicFiles
from r1sft.data.conversation import RowRejected
from r1sft.data.history import EARLIER_REASONING, render_turns
from r1sft.data.hygiene import Decontaminator, ExactDeduper, NearDeduper, QualityFilter
from r1sft.data.readers import Input, iter_records, read_parquet_columns, resolve_inputs
from r1sft.data.reasoning import BEGIN_THOUGHT, SPECIAL_TOKENS, STRATOS_TOKENS, THINK_STYLES
from r1sft.data.registry import DATASET_INFO, check_dataset_info, folder_lock, sharegpt_entry, updated_dataset_info
from r1sft.data.report import LengthReport, RejectLog, Stats, side_files, stats_bytes
from r1sft.data.sampling import SeededSample
from r1sft.data.sources import Source, get_source, parse_field_map
from r1sft.data.system_prompts import SystemPolicy
from r1sft.errors import R1sftError

WRITE_BYTES = 8 << 20
MAX_LEADING_COLUMN_MISSES = 20  # rows in a row without the columns before the file counts as wrong
IOV_MAX = 1024  # POSIX minimum for writev's buffer count


@dataclass
class ConvertOptions:
    """Everything ``r1sft convert`` can be told, with the CLI's defaults."""

    think: str = "native"  # native | keep | thought | none
    split_think: bool = False  # one think block per reasoning paragraph
    earlier_reasoning: str = "drop"  # drop | keep: what earlier replies of a multi-turn row keep (data/history.py)
    system: str = "auto"  # auto | keep | drop | replacement text
    name: str | None = None  # dataset_info.json entry (default: the output's stem)
    dedupe: str | None = None  # None | "exact" | "near"
    decontaminate: list[str] = field(default_factory=list)  # benchmark files (JSONL/JSON/parquet)
    max_tokens: int | None = None
    tokenizer: str | None = None  # path, hub id, or an r1sft tiny preset ("tiny-qwen3")
    min_quality: str | None = None  # e.g. "good": keep good and excellent
    limit: int | None = None  # at most N output rows (the first N; a seeded random N with ``seed``)
    seed: int | None = None
    split: str = "train"  # hub inputs
    subset: str | None = None  # hub inputs (default: the source's config)
    field_map: dict[str, str] | str | None = None  # "question=instruction,answer=output"
    require_reasoning: bool | None = None  # default: the source's own setting
    progress: bool | None = None  # tqdm on stderr; None: only when stderr is a terminal
    register: bool = True


def convert(source: str, inputs, output, options: ConvertOptions | None = None, **overrides) -> Stats:
    """Convert ``inputs`` (paths, folders or hub ids; one or a list) of dataset ``source`` into ``output`` (.jsonl).

    >>> stats = convert("bespoke-stratos", "stratos.parquet", "data/stratos.jsonl", think="native", dedupe="exact")
    """
    return convert_many([(source, inputs)], output, options, **overrides)


def convert_many(parts, output, options: ConvertOptions | None = None, **overrides) -> Stats:
    """Like ``convert`` for several (source, inputs) parts written, in order, into one output file."""
    opts = replace(options or ConvertOptions(), **overrides)
    output = Path(output)
    if output.suffix != ".jsonl":
        raise R1sftError(f"--output {output}: expected a .jsonl file")
    if output.is_dir():
        raise R1sftError(f"--output {output}: is a folder; expected a .jsonl file path")
    _check_options(opts)
    field_map = parse_field_map(opts.field_map)
    plan = []
    own_files = [output, *side_files(output).values()]
    skipped: list[Path] = []
    for source_name, inputs in parts:
        source = get_source(source_name)
        if source.needs_field_map and not field_map:
            raise R1sftError(f"source {source_name!r} needs --map SOURCE_COLUMN=TARGET_COLUMN[,...] "
                             "(targets: instruction, input, output, system, history)")
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


def _check_options(opts: ConvertOptions) -> None:
    if opts.think not in THINK_STYLES:
        raise R1sftError(f"--think {opts.think!r}: expected one of {', '.join(THINK_STYLES)}")
    if opts.split_think and opts.think not in ("native", "thought"):
        raise R1sftError("--split-think needs --think native or thought")
    if opts.earlier_reasoning not in EARLIER_REASONING:
        raise R1sftError(f"--earlier-reasoning {opts.earlier_reasoning!r}: expected {' or '.join(EARLIER_REASONING)}")
    if opts.dedupe not in (None, "exact", "near"):
        raise R1sftError(f"--dedupe {opts.dedupe!r}: expected exact or near")
    if opts.max_tokens is not None and (opts.max_tokens <= 0 or not opts.tokenizer):
        raise R1sftError("--max-tokens needs a positive N and --tokenizer")
    if opts.limit is not None and opts.limit <= 0:
        raise R1sftError("--limit must be positive")


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

    def add(self, record, reason: str, detail: str = "") -> None:
        if not detail.isascii():
            detail = detail.encode("utf-8", "backslashreplace").decode("utf-8")  # valid text is left as it was
        super().add(record, reason, detail)


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


class _Conversion:
    def __init__(self, plan, output: Path, name: str, opts: ConvertOptions, field_map: dict[str, str]) -> None:
        self.plan = plan
        self.output = output
        self.name = name
        self.opts = opts
        self.field_map = field_map
        self.policy = SystemPolicy(opts.system, opts.think)
        self.exact = ExactDeduper() if opts.dedupe in ("exact", "near") else None
        self.near = NearDeduper(opts.seed or 0) if opts.dedupe == "near" else None
        self.decontaminator = Decontaminator(list(opts.decontaminate)) if opts.decontaminate else None
        self.counter = None
        self.lengths = None
        if opts.tokenizer:
            from r1sft.data.tokens import TokenCounter

            self.counter = TokenCounter(opts.tokenizer)
            self.lengths = LengthReport(opts.tokenizer, opts.max_tokens)
        self.sample = SeededSample(opts.limit, opts.seed) if opts.limit and opts.seed is not None else None
        self.keeps_stratos_markup = False  # --think keep wrote Stratos tags: record their special tokens
        self.system_counts: Counter = Counter()
        self.r1_counts: Counter = Counter()  # written rows that carried the R1 prompt, per byte variant
        self.r1_seen: Counter = Counter()  # converted rows that carried it (before hygiene filters)
        options = asdict(opts)
        for key in ("name", "progress", "register"):
            options.pop(key)
        options["field_map"] = field_map
        options["system"] = opts.system
        options["decontaminate"] = [str(p) for p in opts.decontaminate]
        self.stats = Stats(source="+".join(p[0] for p in plan), inputs=[i.label for p in plan for i in p[2]],
                           output=str(output), name=name, options=options)

    # -- the loop ----------------------------------------------------------------------------------------------------

    def run(self) -> Stats:
        with _sigterm_raises():
            try:
                return self._run()
            except OSError as exc:
                raise _os_error(exc, self.output) from None

    def _run(self) -> Stats:
        opts = self.opts
        sides = side_files(self.output)
        files = AtomicFiles()
        progress = _Progress(sum(i.size for p in self.plan for i in p[2]), opts.progress)
        try:
            self.out = files.open(self.output)
            self.out_buffer: list[bytes] = []
            self.out_bytes = 0
            self.rejects = _RejectLog(files.open(sides["rejects"]), self.stats)
            try:
                for source_name, source, inputs in self.plan:
                    for inp in inputs:
                        self._convert_input(source_name, source, inp, progress)
            except _LimitReached:
                pass
            if self.sample is not None:
                for _record, line, n_tokens, variant, action in self.sample.items_in_source_order():
                    self._write(line, n_tokens, variant, action)
            self._flush()
            self.rejects.flush()
            progress.close()
            self._finish_stats()
            files.write_bytes(sides["stats"], stats_bytes(self.stats))
            if self.lengths is not None:
                files.write_bytes(sides["lengths"], self.lengths.plot_png())
            folder = self.output.parent
            with folder_lock(folder):
                if opts.register:
                    files.write_bytes(folder / DATASET_INFO, updated_dataset_info(folder, self.name, self._entry()))
                files.commit()
                if self.lengths is None and sides["lengths"].is_file():
                    sides["lengths"].unlink()  # an earlier run's plot (with --tokenizer) no longer describes OUT
        except BaseException:
            progress.close()
            files.abort()
            raise
        return self.stats

    def _convert_input(self, source_name: str, source: Source, inp: Input, progress) -> None:
        opts = self.opts
        stats = self.stats
        rejects = self.rejects
        field_map = self.field_map
        convert_row = source.convert
        require_reasoning = source.reasoning_required if opts.require_reasoning is None else opts.require_reasoning
        quality = QualityFilter(source.quality_column, opts.min_quality) if opts.min_quality else None
        think, split_think = opts.think, opts.split_think
        policy_apply = self.policy.apply
        decontaminator, counter, lengths = self.decontaminator, self.counter, self.lengths
        exact, near, sample = self.exact, self.near, self.sample
        max_tokens = opts.max_tokens
        limit = opts.limit if sample is None else None
        dumps = orjson.dumps
        newline = orjson.OPT_APPEND_NEWLINE

        needed = source.columns() | ({source.quality_column} if quality else set())
        columns = sorted(needed | {src for src, dst in field_map.items() if dst in needed})
        checked = False
        first_miss = None
        misses_before = self.stats.dropped["missing_field"]
        if inp.kind == "parquet":
            self._check_columns(source_name, source, inp, read_parquet_columns(inp), None)
            checked = True
        subset = opts.subset if opts.subset is not None else source.hub_subset
        for record in iter_records(inp, progress, columns=columns, split=opts.split, subset=subset):
            stats.rows_in += 1
            data = record.data
            if data is None:
                rejects.add(record, record.error, record.detail)
                continue
            if field_map:
                for src, dst in field_map.items():
                    if src in data:
                        data[dst] = data.pop(src)
            if not checked:  # until one row has the source's columns: rows without them may mean a wrong file
                missing = source.missing_columns(data)
                if missing is None:
                    checked = True
                else:
                    first_miss = first_miss or (record.row, list(data))
                    rejects.add(record, "missing_field", f"missing column(s) {', '.join(missing)}")
                    if stats.dropped["missing_field"] >= misses_before + MAX_LEADING_COLUMN_MISSES:
                        self._check_columns(source_name, source, inp, first_miss[1], first_miss[0])
                    continue
            try:
                if quality is not None:
                    quality.check(data)
                conversation = convert_row(data)
                if require_reasoning:
                    last = conversation.exchanges[-1][1]
                    if not last.reasoning:
                        if last.reasoning is None:
                            raise RowRejected("no_thought_block", "the last reply has no reasoning block")
                        raise RowRejected("empty_reasoning", "the last reply's reasoning block is empty")
                system, variant, action = policy_apply(conversation.system)
                if variant:
                    self.r1_seen[variant] += 1
                turns = render_turns(conversation, think, split_think, opts.earlier_reasoning)
                try:  # before the hygiene steps: they would choke on the same text with a vaguer reason
                    line = dumps({"conversations": [{"from": "gpt" if i & 1 else "human", "value": text}
                                                    for i, text in enumerate(turns)], "system": system}, None, newline)
                except TypeError as exc:  # orjson.JSONEncodeError: e.g. a lone surrogate, a valid JSON escape
                    raise RowRejected(*_unwritable(exc)) from None
                if think == "keep" and not self.keeps_stratos_markup:
                    self.keeps_stratos_markup = any(BEGIN_THOUGHT in t for t in turns[1::2])
                if decontaminator is not None:
                    decontaminator.check(conversation.prompts())
                n_tokens = None
                if counter is not None:
                    n_tokens = counter.count(system, turns)
                    if max_tokens is not None and n_tokens > max_tokens:
                        lengths.too_long.append(n_tokens)
                        raise RowRejected("too_long", f"{n_tokens} templated tokens > --max-tokens {max_tokens}")
                if exact is not None:
                    key = exact.key(conversation.prompts())
                    exact.check(key)
                if near is not None:
                    near_keys = near.keys(conversation.prompts())
                    near.check(near_keys)
            except RowRejected as exc:
                rejects.add(record, exc.reason, exc.detail)
                continue
            except (TypeError, AttributeError, KeyError, IndexError, ValueError) as exc:
                # A shape no converter check anticipated: still one bad row, not a dead run.
                rejects.add(record, "malformed_row", f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
                continue
            if exact is not None or near is not None:
                where = f"{record.file} row {record.row}"
                if exact is not None:
                    exact.add(key, where)
                if near is not None:
                    near.add(near_keys, where)
            if sample is not None:
                pushed_out = sample.offer(record.file, record.row, (record, line, n_tokens, variant, action))
                if pushed_out is not None:
                    rejects.add(pushed_out[0], "not_sampled", f"--limit {opts.limit} --seed {opts.seed}")
                continue
            self._write(line, n_tokens, variant, action)
            if limit is not None and stats.rows_out >= limit:
                raise _LimitReached
        if not checked and first_miss is not None:  # no row of this file has the columns: it is the wrong file
            self._check_columns(source_name, source, inp, first_miss[1], first_miss[0])

    def _check_columns(self, source_name: str, source: Source, inp: Input, present, row: int | None) -> None:
        present = list(present)
        if self.field_map and row is None:  # parquet schema: apply the rename to the column names
            present = [self.field_map.get(c, c) for c in present]
        missing = source.missing_columns(present)
        if missing:
            where = f"row {row}: " if row is not None else ""
            raise R1sftError(f"{inp.label}: {where}missing column(s) {', '.join(missing)} required by source "
                             f"{source_name!r} (found: {', '.join(present) or 'none'})")

    # -- output --------------------------------------------------------------------------------------------------------

    def _write(self, line: bytes, n_tokens: int | None, variant: str | None, action: str) -> None:
        self.stats.rows_out += 1
        self.system_counts[action] += 1
        if variant:
            self.r1_counts[variant] += 1
        if n_tokens is not None:
            self.lengths.kept.append(n_tokens)
        self.out_buffer.append(line)
        self.out_bytes += len(line)
        if self.out_bytes >= WRITE_BYTES:
            self._flush()

    def _flush(self) -> None:
        """Hand the buffered lines to the kernel with ``writev``: no joined copy of 8 MB in user space."""
        lines = self.out_buffer
        if not lines:
            return
        writev = getattr(os, "writev", None)
        if writev is None:
            self.out.write(b"".join(lines))
        else:
            fd = self.out.fileno()
            for i in range(0, len(lines), IOV_MAX):
                chunk = lines[i:i + IOV_MAX]
                written = writev(fd, chunk)
                total = sum(map(len, chunk))
                if written < total:  # a short write (rare on regular files): finish it the plain way
                    rest = b"".join(chunk)[written:]
                    while rest:
                        rest = rest[os.write(fd, rest):]
        lines.clear()
        self.out_bytes = 0

    def _finish_stats(self) -> None:
        stats = self.stats
        if stats.rows_in != stats.rows_out + stats.rows_dropped:
            raise AssertionError(f"row accounting broke: {stats.rows_in} in != {stats.rows_out} out + "
                                 f"{stats.rows_dropped} dropped")
        stats.system_prompts = {k: self.system_counts[k] for k in ("kept", "dropped", "replaced", "empty")}
        stats.r1_system_prompt = {
            "rows_in": sum(self.r1_seen.values()),
            "rows_out": sum(self.r1_counts.values()),
            "real_newlines": self.r1_seen["real_newlines"],
            "literal_backslash_n": self.r1_seen["literal_backslash_n"],
            "policy": self.policy.describe(),
        }
        if self.lengths is not None:
            stats.tokens = self.lengths.summary()
        if stats.rows_in == 0:
            stats.warnings.append(f"no rows in {', '.join(stats.inputs)}: wrote an empty dataset "
                                  "(LLaMA-Factory cannot train on it)")
        elif stats.rows_out == 0:
            stats.warnings.append("every row was dropped: wrote an empty dataset (LLaMA-Factory cannot train on it); "
                                  "see the rejects file")

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


def _unwritable(exc: TypeError) -> tuple[str, str]:
    """Reason and detail for a row the JSON encoder refuses: a lone surrogate is what JSONL input calls json_error."""
    text = " ".join(str(exc).split())[:200]
    if "surrogate" in text:
        return "json_error", "a string holds a lone surrogate (an unpaired \\uD800-\\uDFFF escape), not valid Unicode"
    return "malformed_row", text


def _portable(tokenizer: str) -> str:
    """A tokenizer folder inside the project is recorded relative to it, so dataset_info.json is the same anywhere."""
    from r1sft.paths import REPO_ROOT

    path = Path(tokenizer).resolve()
    return str(path.relative_to(REPO_ROOT)) if path.exists() and path.is_relative_to(REPO_ROOT) else tokenizer
