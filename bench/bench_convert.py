"""Benchmark ``r1sft convert`` against the ``datasets.load_dataset`` + ``map`` + ``to_json`` path the seeds use.

    .venv/bin/python bench/bench_convert.py [--size-mb 300] [--json OUT.json] [--skip-baseline]

Generates a Bespoke-Stratos-shaped JSONL (system prompt with literal \\n, user turn, assistant turn with Stratos
thought/solution tags, reasoning 2-40 KB per row; deterministic) into ``.cache/bench/``, then converts it to native
``<think>`` style with each path in its own child process pinned to one CPU core. Each child reports its wall time and
its peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``). Prints a markdown table and writes the numbers as JSON.
MB/s counts input bytes, MB = 10^6 bytes. Targets: >= 150 MB/s, >= 5x the baseline, peak RSS < 1 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from r1sft.data.system_prompts import R1_SYSTEM_PROMPT_LITERAL_NEWLINES

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(os.environ.get("R1SFT_CACHE") or REPO_ROOT / ".cache") / "bench"
STRATOS_PROMPT = R1_SYSTEM_PROMPT_LITERAL_NEWLINES  # the hub copies' byte variant (literal backslash-n)


# ---- data ----------------------------------------------------------------------------------------------------------

def generate(path: Path, size_mb: int, seed: int = 0) -> None:
    import orjson

    rng = random.Random(seed)
    words = ["so", "the", "sum", "is", "then", "we", "check", "whether", "x", "equals", "y", "because", "area", "of",
             "triangle", "half", "base", "times", "height", "and", "wait", "let", "me", "reconsider", "this", "step",
             "since", "3x + 5 = 20", "gives", "x = 5", "hmm"]
    paragraphs = [" ".join(rng.choice(words) for _ in range(rng.randint(20, 90))) + "." for _ in range(2000)]
    target = size_mb * 1_000_000
    written = 0
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        i = 0
        while written < target:
            n = rng.randint(4, 80)
            reasoning = "\n\n".join(paragraphs[rng.randrange(len(paragraphs))] for _ in range(n))
            answer = f"Therefore the answer is $x = {i % 97}$.\n\n\\boxed{{{i % 97}}}"
            row = {"system": STRATOS_PROMPT, "conversations": [
                {"from": "user", "value": f"Return your final response within \\boxed{{}}. Problem {i}: solve for x "
                                          f"when {i % 13}x + {i % 7} = {i % 97}."},
                {"from": "assistant", "value": f"<|begin_of_thought|>\n\n{reasoning}\n\n<|end_of_thought|>\n\n"
                                               f"<|begin_of_solution|>\n\n{answer}\n\n<|end_of_solution|>"}]}
            line = orjson.dumps(row) + b"\n"
            f.write(line)
            written += len(line)
            i += 1
    tmp.replace(path)


# ---- the two paths, each run in a child process ---------------------------------------------------------------------

def run_r1sft(src: str, out: str, extra: dict) -> None:
    from r1sft.data import convert

    convert("bespoke-stratos", src, out, think="native", progress=False, **extra)


def _stratos_to_native(example: dict) -> dict:
    """What a seed-style ``map`` does: split the Stratos tags with str methods, rebuild the conversation."""
    user, assistant = example["conversations"][0]["value"], example["conversations"][1]["value"]
    reasoning = assistant.split("<|begin_of_thought|>")[1].split("<|end_of_thought|>")[0].strip()
    answer = assistant.split("<|begin_of_solution|>")[1].split("<|end_of_solution|>")[0].strip()
    return {"conversations": [{"from": "human", "value": user},
                              {"from": "gpt", "value": f"<think>\n{reasoning}\n</think>\n\n{answer}"}],
            "system": ""}


def run_datasets(src: str, out: str, extra: dict) -> None:
    import datasets

    datasets.disable_progress_bars()
    cache = tempfile.mkdtemp(prefix="bench-datasets-", dir=Path(out).parent)
    try:
        ds = datasets.load_dataset("json", data_files=src, split="train", cache_dir=cache)
        ds = ds.map(_stratos_to_native, remove_columns=ds.column_names)
        ds.to_json(out, lines=True, force_ascii=False)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


PATHS = {"r1sft": run_r1sft, "datasets": run_datasets}


def child(path_name: str, src: str, out: str, extra: str, result_file: str) -> None:
    import resource

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    start = time.perf_counter()
    PATHS[path_name](src, out, json.loads(extra))
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    Path(result_file).write_text(json.dumps({"seconds": seconds, "peak_rss_mb": peak_kb * 1024 / 1e6,
                                             "output_bytes": Path(out).stat().st_size}))


def measure(label: str, path_name: str, src: Path, work: Path, extra: dict | None = None) -> dict:
    out = work / f"{label.replace(' ', '_')}.jsonl"
    result_file = work / f"{label.replace(' ', '_')}.result.json"
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false")
    subprocess.run([sys.executable, __file__, "--child", path_name, str(src), str(out), json.dumps(extra or {}),
                    str(result_file)], check=True, env=env)
    result = json.loads(result_file.read_text())
    size = src.stat().st_size
    result.update(label=label, input_bytes=size, mb_per_s=size / 1e6 / result["seconds"])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--json", type=Path, default=BENCH_DIR / "bench_convert.json")
    parser.add_argument("--skip-baseline", action="store_true", help="only time r1sft")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    src = BENCH_DIR / f"bespoke_shaped_{args.size_mb}mb.jsonl"
    if not src.exists():
        print(f"generating {src} ...", file=sys.stderr)
        generate(src, args.size_mb)
    work = Path(tempfile.mkdtemp(prefix="bench-convert-", dir=BENCH_DIR))
    try:
        results = [measure("r1sft convert", "r1sft", src, work),
                   measure("r1sft convert --dedupe", "r1sft", src, work, {"dedupe": "exact"})]
        if not args.skip_baseline:
            results.append(measure("datasets load+map+to_json", "datasets", src, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base = next((r for r in results if r["label"].startswith("datasets")), None)
    print(f"\nInput: {src.name}, {src.stat().st_size / 1e6:.0f} MB, --think native, one core "
          f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible)\n")
    print("| path | seconds | MB/s | peak RSS (MB) | speed-up |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        r["speedup_vs_datasets"] = base["seconds"] / r["seconds"] if base else None
        speedup = f"{r['speedup_vs_datasets']:.1f}x" if base else "-"
        print(f"| {r['label']} | {r['seconds']:.2f} | {r['mb_per_s']:.0f} | {r['peak_rss_mb']:.0f} | {speedup} |")
    r1 = results[0]
    checks = {"mb_per_s>=150": r1["mb_per_s"] >= 150, "peak_rss<1GB": r1["peak_rss_mb"] < 1000}
    if base:
        checks["speedup>=5x"] = r1["speedup_vs_datasets"] >= 5
    print("\n" + ", ".join(f"{k}: {'ok' if v else 'MISSED'}" for k, v in checks.items()))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"input": str(src), "input_bytes": src.stat().st_size, "results": results,
                                     "checks": checks}, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
