"""What the benchmark prints and writes: one line per arm, a summary per case, and bench.md."""

from __future__ import annotations

# Acceptance targets per case for r1sft's planned arms: tokens/s over the example-style baseline ("ratio", the
# first issue) and over the fastest TRL arm ("vs_trl"), MFU; the memory promise is checked per arm (memory_line).
TARGETS = {
    "qwen2.5-1.5b-full": {"ratio": 4.0, "vs_trl": 2.0, "mfu": 0.45},
    "qwen2.5-7b-lora": {"ratio": 2.0, "vs_trl": 2.0, "mfu": 0.50},
    "qwen2.5-1.5b-full-32k": {"vs_trl": 1.6},
    "qwen2.5-7b-lora-32k": {"vs_trl": 1.6, "mfu": 0.48},
    "qwen2.5-7b-lora-64k": {"mfu": 0.35},
}
LOSS_STEPS = 10


def _f(value, fmt: str, none: str = "n/a") -> str:
    return none if value is None else format(value, fmt)


def arm_line(res: dict, gpu: dict | None) -> str:
    if "tokens_per_s" not in res:
        return f"  [{res['arm']}] no measurement: {res.get('error', '?')}"
    mem = res.get("peak_smi_mib")
    frac = f" ({mem / gpu['memory_mib']:.0%})" if mem and gpu else ""
    return (f"  [{res['arm']}] {res['tokens_per_s']:,.0f} tokens/s, MFU {_f(res.get('mfu'), '.1%')}, "
            f"{res['step_seconds']:.2f} s/step, peak {_f(mem, ',.0f')} MiB{frac} (torch reserved "
            f"{_f(res.get('torch_max_reserved_mib'), ',.0f')}; planner estimate {_f(res.get('estimate_gib'), '.1f')}"
            f" GiB), docs {res['docs']} of mean {res['mean_doc_tokens']:,.0f} tokens, longest in the run "
            f"{_f(res.get('longest_doc_tokens'), ',.0f')}")


def _by_arm(case_res: dict) -> dict:
    return {r["arm"]: r for r in case_res["arms"]}


def knob_diff(base: dict, other: dict) -> list[str]:
    skip = {"output_dir", "model_name_or_path", "dataset_dir", "tokenized_path"}
    keys = [k for k in dict.fromkeys([*base, *other]) if k not in skip]
    return [f"{k}: {base.get(k, '-')} -> {other.get(k, '-')}" for k in keys if base.get(k) != other.get(k)]


def profile_lines(res: dict, top: int = 6) -> list[str]:
    prof = (res.get("raw") or {}).get("profile") or {}
    if not prof:
        return []
    out = [f"    profile [{res['arm']}]: {prof['wall_ms_per_step']:.0f} ms/step wall, GPU kernels "
           f"{prof['gpu_kernel_ms_per_step']:.0f} ms ({_f(prof.get('gpu_busy_fraction'), '.0%')} busy)"]
    cats = prof.get("gpu_ms_per_step_by_category") or {}
    if cats:
        out.append("      GPU time by kind: " + ", ".join(f"{k} {v:.0f} ms" for k, v in cats.items()))
    for k in prof.get("top_kernels", [])[:top]:
        out.append(f"      kernel {k['ms_per_step']:7.1f} ms x{k['calls_per_step']:.0f}  {k['name'][:90]}")
    syncs = prof.get("host_syncs") or {}
    if syncs:
        out.append("      host syncs: " + ", ".join(f"{k} {v['calls_per_step']:.0f}x {v['ms_per_step']:.0f} ms"
                                                   for k, v in syncs.items()))
    for op in prof.get("top_cpu_ops", [])[:4]:
        out.append(f"      cpu {op['ms_per_step']:7.1f} ms x{op['calls_per_step']:.0f}  {op['name']}")
    return out


def limits(res: dict) -> str:
    """One sentence on what bounds this arm's speed, read off its profile."""
    prof = (res.get("raw") or {}).get("profile") or {}
    if not prof:
        return "no profile"
    busy = prof.get("gpu_busy_fraction") or 0
    cats = prof.get("gpu_ms_per_step_by_category") or {}
    total = sum(cats.values()) or 1
    top = ", ".join(f"{k} {v / total:.0%}" for k, v in list(cats.items())[:4])
    if busy < 0.85:
        return (f"GPU idle {1 - busy:.0%} of the step (host-side overhead: launches, syncs, data); "
                f"of GPU time: {top}")
    return f"GPU-bound ({busy:.0%} busy); of GPU time: {top}"


def _per_step(case: dict, arm: dict) -> str:
    """Samples per optimizer step in the window: fixed for unpacked arms, an average over packs for packed ones."""
    start, end = case.get("window") or (0, 0)
    return f"{arm['docs'] / (end - start):.1f}" if end > start and arm.get("docs") else ""


def _loss_columns(arms: list[dict]) -> list[str]:
    """The first LOSS_STEPS optimizer steps' losses of several arms, one column each."""
    out = [f"  loss, first {LOSS_STEPS} optimizer steps ({' | '.join(r['arm'] for r in arms)}):"]
    for i in range(min(LOSS_STEPS, max(len(r["losses"]) for r in arms))):
        cells = (f"{r['losses'][i]:8.4f}" if i < len(r["losses"]) else "       -" for r in arms)
        out.append(f"    step {i + 1:2d}: " + " | ".join(cells))
    return out


def peer_lines(ok: list[dict]) -> list[str]:
    """r1sft's arms against the fastest TRL arm (benchlib/peers.py), and the losses of both side by side (packed
    arms put more samples into a step: compare their losses with each other)."""
    peers = [r for r in ok if r.get("peer") and r.get("losses")]
    if not peers:
        return []
    best = max(peers, key=lambda r: r["tokens_per_s"])
    ours = [r for r in ok if not r.get("peer") and r["arm"] != "baseline"]
    out = [f"  {r['arm']}: {r['tokens_per_s'] / best['tokens_per_s']:.2f}x the fastest TRL arm ({best['arm']})"
           for r in ours]
    mine = [r for r in ours if r["arm"] in ("planned", "planned_packing") and r.get("losses")]
    return out + _loss_columns(mine + peers)


def target_checks(arm: dict, target: dict, base: dict | None, best_peer: dict | None) -> list[str]:
    """``met``/``MISSED`` for each of the case's targets that this run can check."""
    def check(name: str, value: float, goal: float, shown: str) -> str:
        wanted = f"{goal:.0%}" if name == "MFU" else f"{goal:g}x"
        return f"{name} {shown} (target {wanted}): {'met' if value >= goal else 'MISSED'}"

    checks = []
    if "ratio" in target and base:
        ratio = arm["tokens_per_s"] / base["tokens_per_s"]
        checks.append(check("vs baseline", ratio, target["ratio"], f"{ratio:.2f}x"))
    if "vs_trl" in target and best_peer:
        ratio = arm["tokens_per_s"] / best_peer["tokens_per_s"]
        checks.append(check(f"vs {best_peer['arm']}", ratio, target["vs_trl"], f"{ratio:.2f}x"))
    if "mfu" in target and arm.get("mfu") is not None:
        checks.append(check("MFU", arm["mfu"], target["mfu"], f"{arm['mfu']:.1%}"))
    return checks


def case_summary(case_res: dict) -> list[str]:
    arms = _by_arm(case_res)
    out = [f"-- {case_res['case']} summary"]
    base = arms.get("baseline")
    plan = arms.get("planned_tuned") or arms.get("planned")
    ok = [r for r in case_res["arms"] if "tokens_per_s" in r]
    if base and "tokens_per_s" in base:
        for r in ok:
            if r is not base:
                out.append(f"  {r['arm']}: {r['tokens_per_s'] / base['tokens_per_s']:.2f}x baseline tokens/s")
    target = TARGETS.get(case_res["case"], {})
    peers = [r for r in ok if r.get("peer")]
    best_peer = max(peers, key=lambda r: r["tokens_per_s"]) if peers else None
    for arm in (r for r in ok if r["arm"] in ("planned", "planned_tuned", "planned_packing")):
        checks = target_checks(arm, target, base if base and "tokens_per_s" in base else None, best_peer)
        if checks:
            out.append(f"  targets [{arm['arm']}]: " + "; ".join(checks))
        if any("MISSED" in c for c in checks):
            out.append(f"  what limits [{arm['arm']}]: {limits(arm)}")
    for r in ok:
        out.append(f"  limits [{r['arm']}]: {limits(r)}")
    if base and plan and "losses" in base and "losses" in plan:
        out.append(f"  loss, first {LOSS_STEPS} optimizer steps (baseline | {plan['arm']}):")
        for i, (a, b) in enumerate(zip(base["losses"][:LOSS_STEPS], plan["losses"][:LOSS_STEPS], strict=False)):
            out.append(f"    step {i + 1:2d}: {a:8.4f} | {b:8.4f}   diff {b - a:+.4f}")
    # An arm that differs from another only in an implementation (a hook switched off: *_peft_lora, *_peft_cast,
    # *_gc_all, *_keep<N>) must learn the same: their losses side by side.
    for r in ok:
        twin = next((arms.get(r["arm"][: -len(suffix)]) for suffix in ("_peft_lora", "_peft_cast", "_gc_all")
                     if r["arm"].endswith(suffix)), None)
        if twin and "losses" in twin and "losses" in r:
            out.append(f"  loss, first {LOSS_STEPS} optimizer steps ({twin['arm']} | {r['arm']}):")
            for i, (a, b) in enumerate(zip(twin["losses"][:LOSS_STEPS], r["losses"][:LOSS_STEPS], strict=False)):
                out.append(f"    step {i + 1:2d}: {a:8.4f} | {b:8.4f}   diff {b - a:+.4f}")
    out += peer_lines(ok)
    for r in ok:
        if r.get("estimate_gib") is not None and r.get("peak_smi_mib"):
            out.append(memory_line(r, case_res.get("gpu_mem_gib")))
    if base and plan and "config" in base and "config" in plan:
        out.append(f"  {plan['arm']} vs baseline knobs: " + "; ".join(knob_diff(base["config"], plan["config"]))
                   + (f"; env {plan['env']}" if plan.get("env") else ""))
    for r in ok:
        out += profile_lines(r)
    return out


def memory_line(arm: dict, planned_gib: float | None) -> str:
    """The memory promise for one planned arm: the estimate within +-10% of the measured peak, the peak within 92%
    of the GPU memory it was planned for (an emulated smaller GPU under ``--gpu-mem``)."""
    measured = arm["peak_smi_mib"] / 1024
    line = f"  memory [{arm['arm']}]: measured {measured:.1f} GiB (nvidia-smi), planner estimate {arm['estimate_gib']:.1f} GiB"
    compared = arm["estimate_gib"]
    if arm.get("estimate_at_longest_gib") is not None:  # unpacked: the peak follows the longest sample run
        compared = arm["estimate_at_longest_gib"]
        line += f" at the cutoff, {compared:.1f} GiB at the run's longest sample ({arm['estimate_at_longest_tokens']:,} tokens)"
    error = compared / measured - 1
    line += f" ({error:+.0%}, within 10%: {'ok' if abs(error) <= 0.10 else 'MISSED'}"
    if planned_gib:
        share = measured / planned_gib
        line += f"; {share:.0%} of the {planned_gib:.0f} GiB planned for, <= 92%: {'ok' if share <= 0.92 else 'MISSED'}"
    line += f"; {arm['estimate_parts']})"
    if arm.get("estimate_host_gib") and arm.get("max_rss_mib"):  # offloaded: what the host held, beside the plan's
        line += (f"; host: peak RSS {arm['max_rss_mib'] / 1024:.1f} GiB, of which the plan offloads "
                 f"~{arm['estimate_host_gib']:.1f} GiB")
    return line


def markdown(results: dict) -> str:
    gpu = results.get("gpu")
    lines = ["# r1sft training benchmark", "",
             f"- command: `{results['command']}`",
             f"- machine: {gpu['name'] + ', ' + format(gpu['memory_mib'], ',.0f') + ' MiB' if gpu else 'CPU (smoke)'}"
             f"; peak {results.get('peak_tflops')} TFLOP/s bf16; started {results['started']}", ""]
    for case in results["cases"]:
        lines += [f"## {case['case']}", "",
                  f"{case['preset']} {case['method']}, cutoff {case['cutoff']}, {case['samples_per_step']} samples "
                  f"per optimizer step, tokens/s over steps {case['window'][0] + 1}-{case['window'][1]}; "
                  f"synthetic data: {case['data']['samples']} documents, median {case['data']['median_tokens']:,} "
                  f"tokens, max {case['data']['max_tokens']:,}.", "",
                  "| arm | tokens/s | vs baseline | MFU | s/step | peak MiB (nvidia-smi) | torch reserved MiB | "
                  "planner estimate GiB | mean doc tokens | samples/step | what it is |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        base = _by_arm(case).get("baseline")
        for r in case["arms"]:
            if "tokens_per_s" not in r:
                lines.append(f"| {r['arm']} | failed | | | | | | | | | {r.get('error', '')} |")
                continue
            ratio = (f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}x" if base and "tokens_per_s" in base
                     else "")
            lines.append(
                f"| {r['arm']} | {r['tokens_per_s']:,.0f} | {ratio} | {_f(r.get('mfu'), '.1%')} | "
                f"{r['step_seconds']:.2f} | {_f(r.get('peak_smi_mib'), ',.0f')} | "
                f"{_f(r.get('torch_max_reserved_mib'), ',.0f')} | {_f(r.get('estimate_gib'), '.1f')} | "
                f"{r['mean_doc_tokens']:,.0f} | {_per_step(case, r)} | {r['note']} |")
        lines += ["", "```"] + case_summary(case) + ["```", ""]
        plan = _by_arm(case).get("planned_tuned") or _by_arm(case).get("planned")
        if plan and plan.get("plan_summary"):
            lines += ["Planner's reasoning:", "", "```", plan["plan_summary"], "```", ""]
    return "\n".join(lines) + "\n"
