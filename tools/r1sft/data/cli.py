"""``r1sft convert SOURCE --input PATH_OR_HUB_ID --output OUT.jsonl [options]`` (and ``r1sft convert samples``)."""

from __future__ import annotations

import argparse
from pathlib import Path

SAMPLES = "samples"


def _epilog() -> str:
    from r1sft.data.sources import SOURCES

    lines = ["sources:"]
    lines += [f"  {name:<22} {source.description}" for name, source in SOURCES.items()]
    lines.append(f"  {SAMPLES:<22} the bundled samples -> data/r1sft_sample.jsonl, registered as r1sft_sample")
    lines += ["", "outputs beside OUT.jsonl: OUT.stats.json, OUT.rejects.jsonl, OUT.lengths.png (with --tokenizer),",
              "and an entry in dataset_info.json. See docs/data.md."]
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert", help="convert a reasoning dataset into r1sft's ShareGPT JSONL and register it",
        description="Convert a reasoning dataset into ShareGPT JSONL for LLaMA-Factory, with stats and rejects.",
        epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="SOURCE", help="dataset kind (see below)")
    p.add_argument("--input", "-i", dest="inputs", action="append", metavar="PATH_OR_HUB_ID",
                   help="file (.jsonl/.json/.parquet), folder of shards, or hub id; repeat to concatenate "
                        "(default: the source's hub dataset)")
    p.add_argument("--output", "-o", metavar="OUT.jsonl", help="output file (required except for 'samples')")
    p.add_argument("--name", help="dataset_info.json entry name (default: the output file's stem)")
    p.add_argument("--split", default="train", help="hub split (default: train)")
    p.add_argument("--subset", help="hub config (default: the source's, e.g. openthoughts -> default)")
    p.add_argument("--think", default="native", metavar="native|keep|thought|none",
                   help="reasoning style: native <think> blocks (default), the source markup verbatim, Stratos "
                        "thought/solution tags, or the answer only")
    p.add_argument("--split-think", action="store_true", help="one think block per reasoning paragraph")
    p.add_argument("--earlier-reasoning", default="drop", choices=("drop", "keep"),
                   help="multi-turn rows: earlier replies as their answers only, as chat templates show them at "
                        "inference (drop, default; the recipe trains the last reply), or with their reasoning (keep)")
    p.add_argument("--system", default="auto", metavar="auto|keep|drop|TEXT",
                   help="system prompts; auto (default) drops the known Sky-T1/Stratos prompt unless --think is "
                        "keep or thought, and keeps any other")
    p.add_argument("--dedupe", nargs="?", const="exact", choices=("exact", "near"),
                   help="drop rows whose normalised prompt repeats an earlier one (near: also MinHash near-duplicates)")
    p.add_argument("--decontaminate", nargs="+", action="extend", default=[], metavar="FILE",
                   help="benchmark files (JSONL/JSON/parquet, problem or question column): drop rows sharing a "
                        "word 8-gram with any problem")
    p.add_argument("--max-tokens", type=int, metavar="N", help="drop rows longer than N templated tokens")
    p.add_argument("--tokenizer", metavar="PATH_OR_ID", help="tokenizer for --max-tokens and the length report: a "
                   "model folder or hub id, or qwen2.5 / qwen3 (the real vocabulary, offline)")
    p.add_argument("--min-quality", metavar="LEVEL", help="Magpie input_quality floor (good keeps good, excellent)")
    p.add_argument("--limit", type=int, metavar="N", help="write at most N rows (the first N; with --seed a random N)")
    p.add_argument("--seed", type=int, help="seed for --limit sampling and near-dedupe hashing")
    p.add_argument("--map", dest="field_map", metavar="SRC=DST,...",
                   help="rename columns before converting (custom: question=instruction,answer=output)")
    p.add_argument("--require-reasoning", action=argparse.BooleanOptionalAction, default=None,
                   help="reject replies without a chain of thought (default: on for R1 sources)")
    p.add_argument("--max-per-prompt", type=int, metavar="K",
                   help="keep at most K answers per (normalised) prompt, the shortest first (OpenThoughts3 has ~16)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="processes converting rows (default: the available cores, for inputs of 64 MB or more); "
                        "the output is the same for any N")
    g = p.add_argument_group("source options (refused by sources that do not read them)")
    g.add_argument("--reasoning", metavar="on|off|both", help="nemotron: rows of this reasoning mode (default: both)")
    g.add_argument("--thinking-prompt", metavar="drop|keep",
                   help="nemotron: the 'detailed thinking on/off' system prompt (default: drop; keep for a model "
                        "trained to toggle its reasoning)")
    g.add_argument("--mode", metavar="cot|tir|genselect",
                   help="openmath-reasoning: inference mode whose rows to keep and whose prompt to build "
                        "(default: cot)")
    g.add_argument("--min-pass-rate", type=float, metavar="X",
                   help="openmath-reasoning: keep rows with pass_rate_72b_tir >= X (drops 'n/a')")
    g.add_argument("--drop-proofs", action="store_true", default=None,
                   help="openmath-reasoning: drop problem_type converted_proof")
    g.add_argument("--graded-only", action="store_true", default=None,
                   help="s1k: keep only rows whose deepseek_grade is Yes")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar")
    p.add_argument("--no-register", dest="register", action="store_false", help="do not touch dataset_info.json")
    p.add_argument("--allow-empty", action="store_true",
                   help="write a conversion that yields no rows (default: exit 2, nothing written)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys
    from dataclasses import fields

    from r1sft.data.pipeline import ConvertOptions, convert
    from r1sft.data.samples import SAMPLE_NAME, convert_samples
    from r1sft.errors import R1sftError

    options = ConvertOptions(**{f.name: getattr(args, f.name) for f in fields(ConvertOptions)})
    output = Path(args.output) if args.output else None
    if output is not None and args.register:
        _check_output_folder(output)
    info = (output.parent if output else _default_data_dir()) / "dataset_info.json"
    before = info.read_bytes() if args.register and info.is_file() else None
    if args.source == SAMPLES:
        if args.inputs:
            raise R1sftError("convert samples: takes no --input (it converts data/samples/)")
        stats = convert_samples(out_dir=output.parent if output else _default_data_dir(),
                                think=args.think, name=args.name or (output.stem if output else SAMPLE_NAME),
                                **{k: v for k, v in vars(options).items() if k not in ("think", "name")})
    else:
        if not args.output:
            raise R1sftError("convert: --output OUT.jsonl is required")
        stats = convert(args.source, args.inputs, args.output, options)
    print(stats.summary())
    print(f"  wrote {stats.output} (+ .stats.json, .rejects.jsonl)"
          + (f"; registered {stats.name!r} in {Path(stats.output).parent / 'dataset_info.json'}"
             if args.register else ""))
    if args.register:
        folder = Path(stats.output).parent
        if folder.resolve() != _default_data_dir().resolve():
            print(f"  note: recipes read data/; to train on {stats.name!r} set dataset_dir: {folder} in the recipe")
        if before is not None and info.read_bytes() != before and _tracked(info):
            print(f"  note: {_shown(info)} is tracked by git and now registers {stats.name!r} "
                  f"(`git checkout {_shown(info)}` undoes it)")
    for warning in stats.warnings:
        print(f"r1sft convert: warning: {warning}", file=sys.stderr)
    return 0


def _check_output_folder(output: Path) -> None:
    """Registering into a folder that does not exist would create a second dataset_info.json that no recipe reads
    (recipes read ``data/``): refuse, before anything is read, and say where to write instead."""
    from r1sft.errors import R1sftError

    folder = output.parent
    if folder.exists():
        return
    raise R1sftError(f"--output {output}: cannot write into {folder}, a folder that does not exist; recipes read "
                     f"datasets from data/ (write -o data/{output.name}), or create the folder for a dataset_dir "
                     "of your own (then --set dataset_dir=FOLDER in the recipe)")


def _tracked(path: Path) -> bool:
    """True when git tracks ``path`` (no git, or not in a repository: False)."""
    import subprocess

    try:
        return subprocess.run(["git", "ls-files", "--error-unmatch", path.name], cwd=path.parent,
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _shown(path: Path) -> str:
    from r1sft.paths import REPO_ROOT

    path = path.resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def _default_data_dir() -> Path:
    from r1sft.paths import DATA_DIR

    return DATA_DIR
