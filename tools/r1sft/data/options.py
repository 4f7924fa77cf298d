"""``ConvertOptions``: everything ``r1sft convert`` can be told, and the checks that refuse a bad combination with one
line before anything is read."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from r1sft.data.history import EARLIER_REASONING
from r1sft.data.reasoning import THINK_STYLES
from r1sft.data.sources import SOURCE_OPTIONS, check_source_options
from r1sft.errors import R1sftError

# Options that change neither the output nor the stats: left out of OUT.stats.json so that runs which differ only in
# them give byte-identical files.
NOT_RECORDED = ("name", "progress", "register", "workers", "allow_empty")


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
    allow_empty: bool = False  # write (and register) a conversion that yields no rows instead of failing
    max_per_prompt: int | None = None  # keep at most K answers per prompt (shortest first)
    workers: int | None = None  # processes converting rows; None: the available cores for inputs >= 64 MB
    # source options (SOURCE_OPTIONS): None means not given, and the source's own default applies
    reasoning: str | None = None  # nemotron: on | off | both
    thinking_prompt: str | None = None  # nemotron: drop | keep the "detailed thinking on/off" system prompt
    mode: str | None = None  # openmath-reasoning: cot | tir | genselect
    min_pass_rate: float | None = None  # openmath-reasoning
    drop_proofs: bool | None = None  # openmath-reasoning
    graded_only: bool | None = None  # s1k


def check_options(opts: ConvertOptions, source_names: list[str]) -> None:
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
    if opts.max_per_prompt is not None:
        k = opts.max_per_prompt
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise R1sftError(f"--max-per-prompt {opts.max_per_prompt!r}: expected a positive number of answers")
        if opts.limit is not None:
            raise R1sftError("--max-per-prompt cannot be combined with --limit (which answers survive the cap is "
                             "known only at the end); cap in one run, then --limit the capped file")
    if opts.workers is not None and (isinstance(opts.workers, bool) or not isinstance(opts.workers, int)
                                     or opts.workers <= 0):
        raise R1sftError(f"--workers {opts.workers!r}: expected a positive number of processes")
    check_source_options(vars(opts), source_names)


def recorded_options(opts: ConvertOptions, field_map: dict[str, str]) -> dict:
    """The options as OUT.stats.json records them: source options only when given, paths as text."""
    options = {k: v for k, v in vars(opts).items() if k not in NOT_RECORDED
               and not (k in SOURCE_OPTIONS and v is None)}
    options["field_map"] = field_map
    options["decontaminate"] = [str(p) for p in opts.decontaminate]
    return options


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
