"""Benchmark ``r1sft convert``: against the ``datasets`` path the seeds use, and at OpenThoughts3's scale.

    .venv/bin/python bench/bench_convert.py [--case all|bespoke|ot3] [--size-mb 300] [--ot3-rows 1000000]
                                            [--json OUT.json] [--skip-baseline]

``bespoke``: generates a Bespoke-Stratos-shaped JSONL (system prompt with literal \\n, user turn, assistant turn with
Stratos thought/solution tags, reasoning 2-40 KB per row; deterministic) into ``.cache/bench/``, then converts it to
native ``<think>`` style against ``datasets.load_dataset`` + ``map`` + ``to_json``, each path in its own child process
pinned to one CPU core; peak RSS is ``ru_maxrss``. Targets: >= 150 MB/s, >= 5x the baseline, peak RSS < 1 GB.

``ot3``: generates an OpenThoughts3-1.2M-shaped JSONL of ``--ot3-rows`` rows (default 1M: 62,500 questions x 16
answers, rows shuffled, ~2.5 KB each) and a 500-problem benchmark file sharing some of its questions, then converts it
with ``--workers 1`` and ``--workers 2``, plain and as an OpenThoughts3 recipe (``--dedupe near --max-per-prompt 4
--decontaminate``), each run in a child process free to use every core. A sampler thread reads every process of the
run's tree (main, forkserver, workers) from /proc: its peak RSS (``VmHWM``) and CPU seconds; "total RSS" adds the
peaks, an upper bound of what the run held at once. Dedupe memory is the run's own estimate (OUT.stats.json).
Targets: >= 1.8x rows/s with 2 workers vs 1, the recipe in <= 4 GB total RSS.

MB/s counts input bytes, MB = 10^6 bytes. Prints markdown tables and writes the numbers as JSON.
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


OT3_WORDS = tuple(" ".join((
    "the sum of all integers prime number triangle area circle radius sequence term function value equation solve",
    "find compute how many ways positive real roots polynomial digit divisible remainder when divided by probability",
    "that random chosen point inside square side length perimeter angle degrees ratio between consecutive terms",
    "geometric arithmetic mean median maximum minimum")).split(" "))
BOXED = "Return your final response within \\boxed{}. "


def ot3_question(rng: random.Random, q: int) -> str:
    body = " ".join(rng.choice(OT3_WORDS) for _ in range(rng.randint(25, 70)))
    return f"{BOXED if q % 3 == 0 else ''}Problem {q}: {body}?"


def generate_ot3(path: Path, rows: int, answers: int = 16, seed: int = 0) -> list[str]:
    """OpenThoughts3-shaped rows (``difficulty``, ``source``, ``domain``, human/gpt ``conversations``, <think> inline)
    with ``answers`` answers per question, in shuffled order; returns the questions."""
    import orjson

    rng = random.Random(seed)
    questions = [ot3_question(rng, q) for q in range(max(1, rows // answers))]
    paragraphs = [" ".join(rng.choice(OT3_WORDS) for _ in range(rng.randint(20, 60))) + "." for _ in range(4000)]
    order = list(range(rows))
    rng.shuffle(order)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        batch = []
        for i in order:
            q = min(i // answers, len(questions) - 1)
            reasoning = "\n\n".join(paragraphs[rng.randrange(len(paragraphs))] for _ in range(rng.randint(2, 12)))
            batch.append(orjson.dumps({
                "difficulty": 6 + q % 5, "source": "ai2-adapt-dev/openmath-2-math",
                "domain": ("math", "code", "science")[q % 3],
                "conversations": [{"from": "human", "value": questions[q]},
                                  {"from": "gpt", "value": f"<think>\n{reasoning}\n</think>\n\nThe answer is "
                                                          f"\\boxed{{{q % 97}}}."}]}))
            if len(batch) >= 10_000:
                f.write(b"\n".join(batch) + b"\n")
                batch.clear()
        if batch:
            f.write(b"\n".join(batch) + b"\n")
    tmp.replace(path)
    return questions


def generate_benchmark(path: Path, questions: list[str], n: int = 500, seed: int = 1) -> None:
    """Benchmark problems: one in ten is a dataset question (its 16 answers are contaminated), the rest new."""
    rng = random.Random(seed)
    problems = [questions[rng.randrange(len(questions))] if i % 10 == 0 else ot3_question(rng, 10**7 + i)
                for i in range(n)]
    path.write_text("".join(json.dumps({"problem": p}) + "\n" for p in problems))


# ---- the paths, each run in a child process -------------------------------------------------------------------------

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


def run_r1sft_ot3(src: str, out: str, extra: dict) -> dict:
    from r1sft.data import convert

    stats = convert("openthoughts3", src, out, progress=False, register=False, **extra)
    return {"rows_in": stats.rows_in, "rows_out": stats.rows_out, "dropped": dict(stats.dropped),
            "dedupe_mb": (stats.dedupe or {}).get("bytes", 0) / 1e6}


PATHS = {"r1sft": run_r1sft, "datasets": run_datasets, "r1sft-ot3": run_r1sft_ot3}


class TreeMonitor:
    """Samples every process of this one's tree (workers are the forkserver's children) from /proc: per pid the
    peak RSS (VmHWM, kept by the kernel, so no peak is missed between samples) and the CPU seconds so far."""

    def __init__(self, interval: float = 0.1) -> None:
        import threading

        self.peaks: dict[int, tuple[str, float, float]] = {}  # pid -> (name, peak RSS MB, CPU s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> TreeMonitor:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(interval)

    def sample(self) -> None:
        todo = [os.getpid()]
        while todo:
            pid = todo.pop()
            try:
                with open(f"/proc/{pid}/task/{pid}/children") as f:
                    todo.extend(int(p) for p in f.read().split())
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{pid}/status") as f:
                    status = dict(line.split(":", 1) for line in f if ":" in line)
            except (OSError, ValueError):
                continue  # it just ended
            cpu = (int(fields[11]) + int(fields[12])) / self._tick
            hwm = int(status.get("VmHWM", "0 kB").split()[0]) * 1024 / 1e6
            name, old_hwm, old_cpu = self.peaks.get(pid, (status.get("Name", "?").strip(), 0.0, 0.0))
            self.peaks[pid] = (name, max(old_hwm, hwm), max(old_cpu, cpu))


def child(path_name: str, src: str, out: str, extra: str, result_file: str) -> None:
    import resource

    extra = json.loads(extra)
    pin = extra.pop("_pin", True)
    if pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    with TreeMonitor() as monitor:
        start = time.perf_counter()
        report = PATHS[path_name](src, out, extra) or {}
        seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    me = os.getpid()
    others = [(name, hwm, cpu) for pid, (name, hwm, cpu) in monitor.peaks.items() if pid != me]
    report.update(seconds=seconds, peak_rss_mb=peak_kb * 1024 / 1e6, output_bytes=Path(out).stat().st_size,
                  other_rss_mb=sum(hwm for _, hwm, _ in others),
                  worker_rss_mb=max((hwm for _, hwm, _ in others), default=0),
                  main_cpu_s=monitor.peaks.get(me, ("", 0, 0))[2], other_cpu_s=sum(cpu for _, _, cpu in others))
    report["cpu_s"] = report["main_cpu_s"] + report["other_cpu_s"]
    report["total_rss_mb"] = report["peak_rss_mb"] + report["other_rss_mb"]
    Path(result_file).write_text(json.dumps(report))


def measure(label: str, path_name: str, src: Path, work: Path, extra: dict | None = None) -> dict:
    slug = "".join(c if c.isalnum() else "_" for c in label)
    out = work / f"{slug}.jsonl"
    result_file = work / f"{slug}.result.json"
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false")
    subprocess.run([sys.executable, __file__, "--child", path_name, str(src), str(out), json.dumps(extra or {}),
                    str(result_file)], check=True, env=env)
    result = json.loads(result_file.read_text())
    size = src.stat().st_size
    result.update(label=label, input_bytes=size, mb_per_s=size / 1e6 / result["seconds"])
    if "rows_in" in result:
        result["rows_per_s"] = result["rows_in"] / result["seconds"]
    out.unlink(missing_ok=True)  # the next run's output goes to the same disk: do not let them pile up
    return result


def bench_bespoke(args, work: Path) -> dict:
    src = BENCH_DIR / f"bespoke_shaped_{args.size_mb}mb.jsonl"
    if not src.exists():
        print(f"generating {src} ...", file=sys.stderr)
        generate(src, args.size_mb)
    results = [measure("r1sft convert", "r1sft", src, work),
               measure("r1sft convert --dedupe", "r1sft", src, work, {"dedupe": "exact"})]
    if not args.skip_baseline:
        results.append(measure("datasets load+map+to_json", "datasets", src, work))
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
    return {"input": str(src), "input_bytes": src.stat().st_size, "results": results, "checks": checks}


OT3_RECIPE = {"dedupe": "near", "max_per_prompt": 4}


def bench_ot3(args, work: Path) -> dict:
    src = BENCH_DIR / f"ot3_shaped_{args.ot3_rows}.jsonl"
    benchmark = BENCH_DIR / f"ot3_shaped_{args.ot3_rows}.benchmark.jsonl"
    if not src.exists() or not benchmark.exists():
        print(f"generating {src} ...", file=sys.stderr)
        generate_benchmark(benchmark, generate_ot3(src, args.ot3_rows))
    recipe = dict(OT3_RECIPE, decontaminate=[str(benchmark)])
    results = []
    for case, extra in (("plain", {}), ("recipe", recipe)):
        if case not in args.ot3_cases.split(","):
            continue
        for workers in (1, 2):
            label = f"ot3 {case} --workers {workers}"
            results.append(dict(measure(label, "r1sft-ot3", src, work, dict(extra, workers=workers, _pin=False)),
                                case=case, workers=workers))
    print(f"\nInput: {src.name}, {args.ot3_rows:,} rows, {src.stat().st_size / 1e6:.0f} MB; recipe = --dedupe near "
          f"--max-per-prompt 4 --decontaminate (500 problems); {len(os.sched_getaffinity(0))} cores "
          f"({platform.processor() or platform.machine()})\n")
    print("| case | workers | seconds | rows/s | MB/s | CPU s main / workers | peak RSS main / worker / total (MB) "
          "| dedupe MB | rows out | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    checks = {}
    for r in results:
        one = next(x for x in results if x["case"] == r["case"] and x["workers"] == 1)
        r["speedup_vs_1_worker"] = r["rows_per_s"] / one["rows_per_s"]
        print(f"| {r['case']} | {r['workers']} | {r['seconds']:.1f} | {r['rows_per_s']:,.0f} | {r['mb_per_s']:.0f} "
              f"| {r['main_cpu_s']:.1f} / {r['other_cpu_s']:.1f} | {r['peak_rss_mb']:.0f} / {r['worker_rss_mb']:.0f} / {r['total_rss_mb']:.0f} "
              f"| {r['dedupe_mb']:.1f} | {r['rows_out']:,} | {r['speedup_vs_1_worker']:.2f}x |")
        if r["workers"] == 2:
            checks[f"{r['case']}: 2 workers >= 1.8x"] = r["speedup_vs_1_worker"] >= 1.8
        if r["case"] == "recipe":
            checks[f"recipe --workers {r['workers']}: total RSS <= 4 GB"] = r["total_rss_mb"] <= 4000
    return {"input": str(src), "input_bytes": src.stat().st_size, "rows": args.ot3_rows, "results": results,
            "checks": checks}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=("all", "bespoke", "ot3"), default="all")
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--ot3-rows", type=int, default=1_000_000)
    parser.add_argument("--ot3-cases", default="plain,recipe", help="ot3: which of plain, recipe (comma-separated)")
    parser.add_argument("--json", type=Path, default=BENCH_DIR / "bench_convert.json")
    parser.add_argument("--skip-baseline", action="store_true", help="bespoke: only time r1sft")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-convert-", dir=BENCH_DIR))
    report = {}
    try:
        if args.case in ("all", "bespoke"):
            report["bespoke"] = bench_bespoke(args, work)
        if args.case in ("all", "ot3"):
            report["ot3"] = bench_ot3(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    checks = {k: v for part in report.values() for k, v in part["checks"].items()}
    print("\n" + ", ".join(f"{k}: {'ok' if v else 'MISSED'}" for k, v in checks.items()))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
