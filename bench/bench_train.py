"""`make bench`: LLaMA-Factory's example-style config vs the recipe r1sft plans, on this machine's GPU.

For each case (default: Qwen2.5-1.5B full SFT, Qwen2.5-7B LoRA at cutoff 16384, Qwen3-8B LoRA) it builds a
random-initialised model of the real shape (no download), synthetic R1-length reasoning data (log-normal lengths,
median ~4k tokens, up to 15k, with <think> blocks), then trains, in this job, (a) the example-style config,
(b) the planned recipe and (c) TRL's SFTTrainer (open-r1's recipe and TRL's fastest packing, in the peer
environment: benchlib/peers.py), each for a few dozen optimizer steps with the same data and samples per step. It
prints and writes (JSON + markdown) steady-state tokens/s over a window of steps (real tokens only), MFU, peak GPU
memory next to the planner's estimate, the loss curves, and a torch.profiler breakdown of a step.

    make bench                                   # all cases (GPU)
    .venv/bin/python bench/bench_train.py --case qwen2.5-1.5b-full --steps 5-20
    .venv/bin/python bench/bench_train.py --smoke   # CPU, tiny shape, 3 steps: checks the plumbing
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
for extra in (BENCH_DIR, REPO / "tools"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from benchlib import arms as arms_mod  # noqa: E402
from benchlib import peers, report  # noqa: E402
from benchlib.cases import CASES, DEFAULT_CASES  # noqa: E402
from benchlib.measure import MemoryPoller, flops, gpu_info  # noqa: E402
from benchlib.synth import make_dataset, shape_spec  # noqa: E402

LF_RUN = BENCH_DIR / "benchlib" / "lf_run.py"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--case", default="all", help=f"comma-separated: {', '.join(CASES)} (default: all)")
    parser.add_argument("--arms", default="baseline,planned,planned_packing,trl_openr1,trl_fast",
                        help="comma-separated: baseline, planned, exploration variants "
                             f"({', '.join(arms_mod.VARIANTS)}), or TRL peer arms ({', '.join(peers.ARMS)})")
    parser.add_argument("--steps", help="measured window START-END of optimizer steps (default: per case, "
                                        "10-40 for full SFT)")
    parser.add_argument("--profile-steps", type=int, default=2, help="steps profiled after the window (0: none)")
    parser.add_argument("--profile-arms", default="all", help="arms to profile (comma-separated or all)")
    parser.add_argument("--samples", type=int, default=256, help="synthetic documents per family")
    parser.add_argument("--median", type=int, help="median document length in tokens (default: per case, 4000 "
                                                   "at 16k)")
    parser.add_argument("--max-len", type=int, help="longest document in tokens (default: per case, 15000 at 16k)")
    parser.add_argument("--longest-at", type=int, default=24,
                        help="put the longest document at this position of the (unshuffled) data: step 13 of the "
                             "full-SFT case, step 4 of the LoRA cases, inside both measured windows")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny shape, 3 steps: check the plumbing")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "saves" / "bench"),
                        help="where bench.json / bench.md / logs go (default: $OUT or saves/bench)")
    parser.add_argument("--work", default=str(REPO / ".cache" / "bench"), help="models, data, tokenized sets")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per arm before it is stopped")
    parser.add_argument("--gpus", type=int, help="processes per arm (default: the case's; samples per step scale "
                        "with them, so 1 -> N measures per-GPU scaling)")
    parser.add_argument("--peak-tflops", type=float, help="bf16 dense peak of this GPU (default: by its name)")
    parser.add_argument("--gpu-mem", type=float, help="GiB the planner may plan for (default: this GPU's); below "
                                                      "this GPU's, every arm's allocator is capped there too, so a "
                                                      "141 GB GPU stands in for an 80 GB one")
    parser.add_argument("--peer-python", help="interpreter of the TRL peer arms (default: .venv-peers/bin/python "
                                              "if it exists, else this one with --peer-pythonpath)")
    parser.add_argument("--peer-pythonpath", help=f"PYTHONPATH of the peer arms instead of this run's (default: "
                                                  f"${peers.PEER_PYTHONPATH_ENV}; the GPU machine: /tmp/peersite)")
    return parser.parse_args(argv)


def _model_shape(case, smoke: bool) -> tuple[dict, object]:
    """The shape to build (as JSON for the builder) and the r1sft Shape used for FLOPs."""
    from r1sft.presets import get_preset, read_config, shape_from_config
    from r1sft.tiny import ensure_tiny_model

    preset = get_preset(case.preset)
    shape = preset.shape
    if smoke:
        tiny = ensure_tiny_model(f"tiny-{preset.family.name}")
        shape = shape_from_config(read_config(tiny), preset.family)
    return shape_spec(preset.family.name, shape), shape


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_model(spec: dict, work: Path, name: str, device: str, log) -> Path:
    out = work / "models" / name
    stamp = out / "bench_shape.json"
    if stamp.exists() and stamp.read_text() == json.dumps(spec, sort_keys=True):
        return out
    t0 = time.time()
    cmd = [sys.executable, "-m", "benchlib.synth", "model", "--shape", json.dumps(spec), "--out", str(out),
           "--device", device]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH_DIR), str(REPO / "tools"),
                                                         os.environ.get("PYTHONPATH", "")])}
    subprocess.run(cmd, check=True, env=env, cwd=str(REPO))
    log(f"  built {name} ({time.time() - t0:.0f} s)")
    return out


def run_arm(arm, ctx, case, window, profile_steps, out_dir: Path, timeout: int, log) -> dict:
    """Launch one arm in its own process (torchrun when it uses DeepSpeed) and collect its measurements."""
    import yaml

    run_dir = ctx.work / "runs" / case.name
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / f"{arm.name}.yaml"
    cfg_path.write_text(yaml.safe_dump(arm.config, sort_keys=False))
    result_path = run_dir / f"{arm.name}.result.json"
    result_path.unlink(missing_ok=True)
    script = [str(LF_RUN), str(cfg_path), str(result_path), str(window[0]), str(window[1]), str(profile_steps)]
    if arm.torchrun or case.gpus > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(case.gpus), "--master_port",
               str(_free_port()), *script]
    else:
        cmd = [sys.executable, *script]
    env = {**os.environ, **arm.env, "PYTHONUNBUFFERED": "1"}
    if ctx.memory_cap_gib:
        env["R1SFT_BENCH_MEMORY_CAP_GIB"] = str(ctx.memory_cap_gib)
    if arm.peer:  # TRL, in its own environment: never LLaMA-Factory's site (benchlib/peers.py)
        cmd, env = peers.launch(ctx, script[1:], env)
    if ctx.cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    log_path = out_dir / f"{case.name}.{arm.name}.log"
    log(f"  [{arm.name}] {arm.note}" + (f"  env {arm.env}" if arm.env else ""))
    t0 = time.time()
    with MemoryPoller() as poller, open(log_path, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, cwd=str(REPO), stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(proc)
            code = "timeout"
        except BaseException:  # interrupted or terminated: the arm has its own session, so stop it too
            _stop(proc)
            raise
    wall = time.time() - t0
    raw = json.loads(result_path.read_text()) if result_path.exists() else None
    res = {"arm": arm.name, "note": arm.note, "env": arm.env, "config": arm.config, "exit": code,
           "wall_seconds": wall, "peak_smi_mib": poller.peak_mib, "raw": raw, "log": str(log_path),
           "plan_summary": arm.plan_summary, "packed": arm.packed, "peer": arm.peer}
    if arm.peer:
        peers.annotate(res)
    est = arm.memory_estimate
    if est is not None:
        res["estimate_gib"] = est.peak_gib
        res["estimate_phase"] = est.phase
        res["estimate_parts"] = est.breakdown()
        res["estimate_host_gib"] = est.host / 1024**3
    if raw is None or "window" not in raw:
        tail = log_path.read_text(errors="replace").splitlines()[-25:]
        res["error"] = f"exit {code}; no measurement (log {log_path})"
        log(f"  [{arm.name}] FAILED ({res['error']}):\n    " + "\n    ".join(tail))
    return res


def estimate_at_longest(res: dict, arm, ctx) -> None:
    """An unpacked arm's peak follows its longest sample, which synthetic data (and real data) rarely brings to the
    cutoff the plan is estimated at: the model's figure at that sample's padded length is what the peak is compared
    with (packs fill the cutoff: no need)."""
    longest = res.get("longest_doc_tokens")
    if arm.peer or arm.packed or not longest or res.get("estimate_gib") is None:
        return
    padded = min(int(arm.config["cutoff_len"]), -(-int(longest) // 8) * 8)  # LLaMA-Factory pads to a multiple of 8
    est = arms_mod.memory_estimate_for(ctx, {**arm.config, "cutoff_len": padded}, arm.env)
    if est is not None:
        res["estimate_at_longest_gib"], res["estimate_at_longest_tokens"] = est.peak_gib, padded


def _stop(proc: subprocess.Popen) -> None:
    """Stop an arm's whole process group (torchrun and its workers, dataloader workers): TERM, then KILL."""
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()


def compute(res: dict, shape, case, peak_tflops: float | None) -> None:
    w = (res.get("raw") or {}).get("window")
    if not w:
        return
    res["tokens_per_s"] = w["tokens"] / w["seconds"]
    res["step_seconds"] = w["seconds"] / max(1, w["steps"])
    res["docs"] = w["docs"]
    res["mean_doc_tokens"] = w["tokens"] / max(1, w["docs"])
    res["token_weighted_doc_tokens"] = w["sumsq"] / max(1, w["tokens"])
    total = flops(shape, case.method, w["tokens"], w["sumsq"])
    res["tflops_per_s"] = total / w["seconds"] / 1e12
    gpus = max(1, int((res["raw"].get("meta") or {}).get("world", 1)))  # lf_run sums tokens over the ranks
    res["gpus"] = gpus
    res["tokens_per_s_per_gpu"] = res["tokens_per_s"] / gpus
    res["mfu"] = res["tflops_per_s"] / (peak_tflops * gpus) if peak_tflops else None
    mem = res["raw"].get("memory") or {}
    res["torch_max_reserved_mib"] = mem.get("max_reserved_mib")
    res["torch_max_allocated_mib"] = mem.get("max_allocated_mib")
    res["alloc_retries"] = mem.get("alloc_retries")
    res["max_rss_mib"] = mem.get("max_rss_mib")  # the rank-0 process's host peak: pinned offload buffers count
    res["losses"] = [s["loss"] for s in res["raw"]["steps"]]
    res["longest_doc_tokens"] = max((s.get("longest", 0) for s in res["raw"]["steps"]), default=None)


def main(argv=None) -> int:
    args = parse_args(argv)
    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(args.work).resolve() / ("smoke" if args.smoke else "gpu")
    work.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def log(msg: str) -> None:
        print(msg, flush=True)
        lines.append(msg)

    gpu = None if args.smoke else gpu_info()
    if gpu is None and not args.smoke:
        log("bench: no NVIDIA GPU found (nvidia-smi); run `bench_train.py --smoke` for the CPU smoke run")
        return 2
    peak = args.peak_tflops or (gpu or {}).get("peak_tflops")
    gpu_mem = None if args.smoke else (args.gpu_mem or gpu["memory_mib"] / 1024)
    case_names = DEFAULT_CASES if args.case == "all" else [c.strip() for c in args.case.split(",") if c.strip()]
    unknown = [c for c in case_names if c not in CASES]
    if unknown:
        log(f"bench: unknown case {unknown[0]!r}; known: {', '.join(CASES)}")
        return 2
    arm_names = [a.strip() for a in args.arms.split(",") if a.strip()]
    profile_arms = set(arm_names if args.profile_arms == "all" else args.profile_arms.split(","))
    peer_python, peer_path = peers.interpreter(args.peer_python, args.peer_pythonpath)
    command = "python bench/bench_train.py " + " ".join(sys.argv[1:] if argv is None else argv)
    log(f"bench: {command}")
    log(f"bench: {'CPU smoke run' if args.smoke else gpu['name'] + f' ({gpu_mem:.1f} GiB, peak {peak} TFLOP/s bf16)'}")
    if any(name in peers.ARMS for name in arm_names):
        log(f"bench: peer arms run {peer_python or '(no peer environment)'}"
            + (f" with PYTHONPATH={peer_path}" if peer_path else ""))

    results = {"command": command, "gpu": gpu, "peak_tflops": peak, "smoke": args.smoke,
               "started": time.strftime("%Y-%m-%d %H:%M:%S"), "cases": []}
    for name in case_names:
        case = CASES[name]
        samples, median, max_len = args.samples, args.median or case.median, args.max_len or case.max_len
        if args.smoke:
            case = replace(case, cutoff=1024, window=(1, 3), gpus=1, sequence_parallel=1, sets=())  # one CPU process
            samples, median, max_len = 64, 200, 800
        if args.steps:
            start, end = (int(x) for x in args.steps.split("-"))
            case = replace(case, window=(start, end))
        if args.gpus and args.gpus != case.gpus:
            case = replace(case, gpus=args.gpus, samples_per_step=case.samples_per_step * args.gpus // case.gpus)
        log(f"\n== {case.name}: {case.preset} {case.method}, cutoff {case.cutoff}, "
            f"{case.samples_per_step} samples per optimizer step, window steps {case.window[0] + 1}-{case.window[1]}"
            + (f", {case.gpus} GPUs" if case.gpus > 1 else "")
            + (f", each trace split over {case.sequence_parallel}" if case.sequence_parallel > 1 else ""))
        spec, shape = _model_shape(case, args.smoke)
        model_dir = build_model(spec, work, case.preset + ("-smoke" if args.smoke else ""),
                                "cpu" if args.smoke else "cuda", log)
        data = make_dataset(spec["family"], work / "data" / f"median{median}-max{max_len}", samples, median, 0.6,
                            max_len, 256 if not args.smoke else 32, seed=0, longest_at=args.longest_at)
        ctx = arms_mod.Context(case=case, model_dir=model_dir, dataset=data["dataset"],
                               data_dir=Path(data["dataset_dir"]), work=work, gpu_mem_gib=gpu_mem, smoke=args.smoke,
                               preprocessing_workers=min(16, os.cpu_count() or 1), peer_python=peer_python,
                               peer_pythonpath=peer_path,
                               memory_cap_gib=gpu_mem if gpu and args.gpu_mem and gpu_mem < gpu["memory_mib"] / 1024 else None)
        max_steps = case.window[1] + args.profile_steps
        case_res = {"case": case.name, "preset": case.preset, "method": case.method, "cutoff": case.cutoff,
                    "samples_per_step": case.samples_per_step, "window": case.window, "params": shape.total_params,
                    "gpu_mem_gib": gpu_mem, "memory_cap_gib": ctx.memory_cap_gib,
                    "data": {"samples": len(data["lengths"]), "median_tokens": sorted(data["lengths"])[
                        len(data["lengths"]) // 2], "max_tokens": max(data["lengths"])}, "arms": []}
        for arm_name in arm_names:
            try:
                arm = (peers.build if arm_name in peers.ARMS else arms_mod.build)(arm_name, ctx)
            except Exception as exc:  # noqa: BLE001 - report and go on with the other arms
                log(f"  [{arm_name}] could not be built: {type(exc).__name__}: {exc}")
                case_res["arms"].append({"arm": arm_name, "error": f"{type(exc).__name__}: {exc}"})
                continue
            tok_key = (f"{spec['family']}-{case.template}-{case.cutoff}-{samples}-{median}-{max_len}"
                       + ("-packed" if arm.packed else ""))
            if arm.peer:
                peers.bench_keys(arm, ctx, max_steps)
            else:
                arms_mod.bench_keys(arm, ctx, max_steps, work / "tokenized" / tok_key)
            res = run_arm(arm, ctx, case, case.window, args.profile_steps if arm_name in profile_arms else 0,
                          out_dir, args.timeout, log)
            compute(res, shape, case, peak)
            estimate_at_longest(res, arm, ctx)
            case_res["arms"].append(res)
            log(report.arm_line(res, gpu))
            _write(out_dir, {**results, "cases": results["cases"] + [case_res]})
        results["cases"].append(case_res)
        for line in report.case_summary(case_res):
            log(line)
        _write(out_dir, results)
    _write(out_dir, results)
    log(f"\nbench: wrote {out_dir / 'bench.json'} and {out_dir / 'bench.md'}")
    return 0


def _write(out_dir: Path, results: dict) -> None:
    for name, text in (("bench.json", json.dumps(results, indent=1, default=str)),
                       ("bench.md", report.markdown(results))):
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out_dir / name)


if __name__ == "__main__":
    # `timeout` and job schedulers send SIGTERM: raise, so that the running arm is stopped with the bench (an arm
    # left running once shared the GPU with the next one: docs/bench/h200-peers/7b-lora-32k-trl-timeout.md)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sys.exit(main())
