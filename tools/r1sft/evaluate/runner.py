"""``evaluate()``: problems -> prompts -> generations -> scored records -> report. The library behind ``r1sft eval``."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from r1sft import __version__
from r1sft.errors import R1sftError
from r1sft.evaluate.generate import (
    SamplingSettings,
    build_prompts,
    generate,
    load_tokenizer,
    resolve_backend,
    stop_token_ids,
)
from r1sft.evaluate.problems import load_problems
from r1sft.evaluate.report import samples_path, write_report
from r1sft.evaluate.scoring import aggregate, score_generation
from r1sft.paths import SAVES_DIR


def default_report_path(model: str | Path, data: str | Path) -> Path:
    """Beside a local model (``<model>/eval/<data>.json``), else ``saves/eval/<owner--name>/<data>.json``."""
    stem = re.sub(r"[^\w.-]+", "_", Path(str(data)).stem if Path(str(data)).exists() else str(data).replace("/", "--"))
    model_path = Path(str(model))
    if model_path.is_dir():
        return model_path / "eval" / f"{stem}.json"
    return SAVES_DIR / "eval" / str(model).replace("/", "--") / f"{stem}.json"


def _check_settings(settings: SamplingSettings, limit: int | None) -> None:
    problems = []
    if settings.n < 1:
        problems.append("--n must be at least 1")
    if settings.temperature < 0:
        problems.append("--temperature must be >= 0 (0 means greedy)")
    if not 0 < settings.top_p <= 1:
        problems.append("--top-p must be in (0, 1]")
    if settings.max_new_tokens < 1:
        problems.append("--max-new-tokens must be at least 1")
    if settings.batch_size < 1:
        problems.append("--batch-size must be at least 1")
    if limit is not None and limit < 1:
        problems.append("--limit must be at least 1")
    if problems:
        raise R1sftError("; ".join(problems))


def evaluate(model: str | Path, data: str | Path, *, out: str | Path | None = None, n: int = 1,
             temperature: float = 0.6, top_p: float = 0.95, max_new_tokens: int = 4096, limit: int | None = None,
             batch_size: int = 8, system: str | None = None, enable_thinking: bool | None = None,
             backend: str = "auto", seed: int = 0, problem_key: str | None = None, answer_key: str | None = None,
             split: str = "test", subset: str | None = None, trust_remote_code: bool = False,
             progress: bool = True, own_stop: bool = False) -> dict:
    """Generate ``n`` answers per problem of ``data`` with ``model``, score them and write the report.

    Returns the report dict (also written to ``out``, default ``default_report_path``), whose ``samples_file`` names
    the per-sample JSONL. Data is read and validated before the model is loaded, so a bad file fails fast.
    ``own_stop``: stop only at the EOS ids of the model's generation_config.json, as transformers' ``generate``
    does, instead of also at the tokenizer's EOS and the template's end-of-turn token.
    """
    settings = SamplingSettings(n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                                batch_size=batch_size, seed=seed)
    _check_settings(settings, limit)
    notes = []
    if settings.greedy and settings.n > 1:
        notes.append(f"greedy decoding gives one answer per problem: --n {settings.n} reduced to 1")
        settings = SamplingSettings(n=1, temperature=0, top_p=top_p, max_new_tokens=max_new_tokens,
                                    batch_size=batch_size, seed=seed)
    problems = load_problems(data, problem_key=problem_key, answer_key=answer_key, limit=limit, split=split,
                             subset=subset)
    model_ref = str(model)
    if not Path(model_ref).exists() and (model_ref.startswith((".", "/", "~")) or model_ref.count("/") != 1):
        raise R1sftError(f"{model_ref}: no such model folder")
    if (Path(model_ref) / "adapter_config.json").exists() and not (Path(model_ref) / "config.json").exists():
        raise R1sftError(f"{model_ref}: a LoRA adapter, not a model; merge it first (r1sft merge) and evaluate the "
                         "merged folder")
    chosen = resolve_backend(backend)
    tokenizer = load_tokenizer(model_ref, trust_remote_code)
    prompts = build_prompts(tokenizer, [p.problem for p in problems], system, enable_thinking, model_ref)
    stops = stop_token_ids(tokenizer, model_ref, own=own_stop)
    if not stops:
        raise R1sftError(f"{model_ref}: no end-of-sequence token in the tokenizer or generation_config")

    started = time.time()
    generations = generate(model_ref, tokenizer, prompts, settings, chosen, stops, trust_remote_code, progress)
    elapsed = time.time() - started

    records = []
    for problem, prompt, samples in zip(problems, prompts, generations, strict=True):
        for sample, gen in enumerate(samples):
            scored = score_generation(gen.text, problem.answer, gen.finish_reason, prompt, gen.num_tokens)
            records.append({"index": problem.index, "sample": sample, "problem": problem.problem, "prompt": prompt,
                            "generation": gen.text, **scored})
    metrics = aggregate(records)
    path = Path(out) if out is not None else default_report_path(model_ref, data)
    report = {
        "model": model_ref,
        "data": str(data),
        "backend": chosen,
        "settings": {"n": settings.n, "temperature": settings.temperature, "top_p": settings.top_p,
                     "max_new_tokens": settings.max_new_tokens, "batch_size": settings.batch_size,
                     "seed": settings.seed, "limit": limit, "system": system, "enable_thinking": enable_thinking,
                     "stop_token_ids": stops, "own_stop": own_stop},
        # headline copies of metrics.accuracy / metrics.format_compliance, under the names scripts read
        "accuracy": metrics["accuracy"],
        "well_formed": metrics["format_compliance"],
        "metrics": metrics,
        "notes": notes,
        "samples_file": samples_path(path).name,
        "generation_seconds": round(elapsed, 3),
        "r1sft_version": __version__,
    }
    write_report(report, records, path)
    report["report_file"] = str(path)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return report
