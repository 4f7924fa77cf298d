"""The measuring callback both bench runners add (``lf_run.py`` for LLaMA-Factory, ``trl_run.py`` for TRL).

Needs only torch and transformers, so it runs in either environment. It:

- counts the real (non-padding) tokens of every micro-batch and each document's length (for the attention term of
  the FLOP count) from the model's inputs, on the device, without host syncs: a 2D padding mask, LLaMA-Factory's
  4D block-diagonal mask (neat packing), or TRL's padding-free ``position_ids``;
- records every micro-batch's loss the same way (so loss curves need no ``logging_steps: 1``);
- synchronises the GPU only at the start and the end of the measured window of optimizer steps;
- profiles a few steps after the window with torch.profiler and summarises where the step's time goes;
- writes RESULT.json and ends the process without saving the model (saving is not what is measured).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

import torch
from transformers import TrainerCallback

KERNEL_CLASSES = [  # (category, regex on kernel names); first match wins
    ("attention (sdpa/flash)", r"flash|fmha|attention|sdpa|_efficient_attention|cutlass.*Kernel.*Attention"),
    ("matmul (GEMM)", r"gemm|sm90_xmma|nvjet|cutlass|cublas|ampere_|hopper_|s16816|wgmma|splitK|gemv"),
    ("optimizer (Adam, grad norm)", r"adam|multi_tensor|foreach|lpnorm|norm_kernel|_amp_"),
    ("liger/triton kernels", r"liger|triton|_rms_norm|swiglu|rope|cross_entropy|fused_linear"),
    ("communication (NCCL)", r"nccl"),
    ("copies (memcpy/memset, casts)", r"memcpy|memset|Memcpy|Memset|copy_|to_copy|CatArrayBatched|cat_"),
    ("reductions/softmax", r"reduce|softmax|log_softmax|nll_loss|embedding|index|scatter|gather"),
]
IGNORE_INDEX = -100  # labels of tokens without a loss (LLaMA-Factory's and TRL's)
SYNC_OPS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "aten::_local_scalar_dense",
            "aten::item", "cudaMemcpyAsync")


def _classify(name: str) -> str:
    for label, pattern in KERNEL_CLASSES:
        if re.search(pattern, name, flags=re.IGNORECASE):
            return label
    return "elementwise/other"


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _rows_full(ids):
    """No mask, no positions: every row is one document filling the row."""
    rows = torch.full((ids.shape[0],), ids.shape[1], device=ids.device)
    return rows.sum(), (rows * rows).sum(), torch.tensor(ids.shape[0], device=ids.device), rows.max()


def _rows_masked(mask):
    """2D padding mask: one document per row, its real tokens are the mask's ones."""
    rows = (mask != 0).sum(-1)
    return rows.sum(), (rows * rows).sum(), (rows > 0).sum(), rows.max()


def _block_diagonal(mask):
    """4D block-diagonal mask (LLaMA-Factory's neat packing): rows count the keys each token sees."""
    allowed = mask[:, 0] if mask.dtype == torch.bool else mask[:, 0] == 0
    real = torch.diagonal(allowed, dim1=-2, dim2=-1)
    seen = allowed.sum(-1) * real
    nxt = torch.cat([seen[:, 1:], torch.zeros_like(seen[:, :1])], dim=1)
    ends = real & (nxt != seen + 1)
    lengths = seen * ends
    return real.sum(), (lengths * lengths).sum(), ends.sum(), lengths.max()


def _padding_free(position_ids, labels=None):
    """Padding-free packing (TRL; r1sft's packs): no mask, documents laid end to end, ``position_ids`` restart at
    0 at each one.

    A document ends where the next position is 0 (or the row ends); its length is its last position + 1. Found
    with elementwise ops, so no host sync (``nonzero`` would need one). With ``labels``, a row's last run without
    a single label is padding (r1sft.patches.packed_attention makes a pack's padding one run), not a document.
    """
    nxt = torch.cat([position_ids[:, 1:], torch.zeros_like(position_ids[:, :1])], dim=1)
    ends = nxt == 0
    if labels is not None:
        index = torch.arange(position_ids.shape[1], device=position_ids.device)
        last_run = index >= ((position_ids == 0) * index).amax(dim=1, keepdim=True)
        padding = ~((labels != IGNORE_INDEX) & last_run).any(dim=1, keepdim=True)
        ends = ends & ~(last_run & padding)
    lengths = (position_ids + 1) * ends
    return lengths.sum(), (lengths * lengths).sum(), ends.sum(), lengths.max()


def count_documents(ids, mask=None, position_ids=None, labels=None) -> tuple:
    """(real tokens, sum of squared document lengths, documents, longest document) of one micro-batch, as device
    tensors: the FLOP count's attention term needs each document's own length, not the row's."""
    if mask is not None:
        return _rows_masked(mask) if mask.dim() == 2 else _block_diagonal(mask)
    if position_ids is not None and ids.shape[0] == 1 and ids.shape[1] > 1:
        return _padding_free(position_ids, labels)
    return _rows_full(ids)


class BenchCallback(TrainerCallback):
    """Counts, times, records losses and profiles the optimizer steps of a ``transformers.Trainer`` run.

    ``loss_from_outputs``: read each micro-batch's loss off the model's output (LLaMA-Factory); False where the
    trainer computes it elsewhere and reports it through ``record_loss`` (TRL).
    """

    def __init__(self, start: int, end: int, profile_steps: int, result_path: str, meta: dict,
                 loss_from_outputs: bool = True):
        self.start, self.end, self.profile_steps = start, end, profile_steps
        self.loss_from_outputs = loss_from_outputs
        self.result_path, self.meta = result_path, meta
        self.micro: list[tuple] = []  # (tokens, sum of squared doc lengths, docs, longest) tensors of this step
        self.losses: list = []
        self.steps: list[dict] = []
        self.normalized_by_step = False
        self.logged: list[dict] = []
        self.t = {}
        self.step_times: list[float] = []
        self.prof = None
        self.written = False

    # -- model hooks: run inside the training process, on device tensors, never .item() --
    def _pre_hook(self, module, args, kwargs):
        # r1sft's sequence-parallel patch, when installed (never in a TRL peer process, which has no r1sft)
        split = sys.modules.get("r1sft.patches.sequence_parallel")
        if split is not None and split._state["group"] is not None:  # a shard: count the whole trace's documents
            self.micro.append(_split_trace_stats(kwargs["attention_mask"], split._state))
            return
        ids = kwargs.get("input_ids")
        if ids is None and args:
            ids = args[0]
        if "num_items_in_batch" in kwargs:
            self.normalized_by_step = True
        self.micro.append(count_documents(ids, kwargs.get("attention_mask"), kwargs.get("position_ids"),
                                          kwargs.get("labels")))

    def _post_hook(self, module, args, kwargs, output):
        loss = getattr(output, "loss", None)
        if loss is None and isinstance(output, (tuple, list)) and output and torch.is_tensor(output[0]):
            loss = output[0] if output[0].dim() == 0 else None
        if loss is not None and self.loss_from_outputs:
            self.losses.append(loss.detach().float())

    def record_loss(self, loss, normalized_by_step: bool) -> None:
        """For trainers that compute the loss outside the model's forward (TRL's fused LM head): the loss of one
        micro-batch, already divided by the step's token count when ``normalized_by_step``."""
        self.normalized_by_step = normalized_by_step
        self.losses.append(loss.detach().float())

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        model.register_forward_pre_hook(self._pre_hook, with_kwargs=True)
        model.register_forward_hook(self._post_hook, with_kwargs=True)
        self.t["train_begin"] = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            self.logged.append({"step": state.global_step, **{k: v for k, v in logs.items()
                                                                if isinstance(v, (int, float))}})

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        now = time.perf_counter()
        self.step_times.append(now)
        if self.micro:
            tok = torch.stack([m[0] for m in self.micro]).sum()
            sq = torch.stack([m[1].to(torch.float64) for m in self.micro]).sum()
            docs = torch.stack([m[2] for m in self.micro]).sum()
            longest = torch.stack([m[3] for m in self.micro]).max()
        else:
            tok = sq = docs = longest = torch.zeros(())
        loss = torch.stack(self.losses) if self.losses else torch.zeros(1)
        self.steps.append({"step": step, "tokens": tok, "sumsq": sq, "docs": docs, "longest": longest,
                           "micro": len(self.micro),
                           "loss": loss.sum() if self.normalized_by_step else loss.mean()})
        self.micro, self.losses = [], []
        if step == self.start:
            _sync()
            self.t["window_start"] = time.perf_counter()
        if step == self.end:
            _sync()
            self.t["window_end"] = time.perf_counter()
            self.mem = self._memory()
            self._sum_over_ranks()
            if self.profile_steps > 0:
                self.prof = torch.profiler.profile(
                    activities=[torch.profiler.ProfilerActivity.CPU]
                    + ([torch.profiler.ProfilerActivity.CUDA] if torch.cuda.is_available() else []))
                self.prof.__enter__()
                self.t["profile_start"] = time.perf_counter()
        if step >= self.end + self.profile_steps:
            control.should_training_stop = True
        if self.prof is not None and step == self.end + self.profile_steps:
            _sync()
            self.t["profile_end"] = time.perf_counter()
            self.prof.__exit__(None, None, None)

    def _sum_over_ranks(self) -> None:
        """Every rank's tokens, documents and squared lengths of the window, added up (rank 0 writes them)."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        window = [s for s in self.steps if self.start < s["step"] <= self.end]
        for key in ("tokens", "sumsq", "docs"):
            total = torch.stack([torch.as_tensor(s[key], dtype=torch.float64) for s in window]).sum().to(
                "cuda" if torch.cuda.is_available() else "cpu")
            torch.distributed.all_reduce(total)
            self.meta[f"window_{key}"] = total.item()
        self.meta["world"] = torch.distributed.get_world_size()

    @staticmethod
    def _memory() -> dict:
        import resource

        host = {"max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # Linux: kB
        if not torch.cuda.is_available():
            return host
        return {**host, "max_allocated_mib": torch.cuda.max_memory_allocated() / 2**20,
                "max_reserved_mib": torch.cuda.max_memory_reserved() / 2**20,
                "alloc_retries": torch.cuda.memory_stats().get("num_alloc_retries", 0)}

    def _profile_summary(self) -> dict:
        if self.prof is None:
            return {}
        wall = (self.t["profile_end"] - self.t["profile_start"]) / self.profile_steps
        averages = self.prof.key_averages()
        gpu: dict[str, float] = {}
        cpu_ops, syncs, kernels = [], {}, []
        for avg in averages:
            dev_t = getattr(avg, "self_device_time_total", None)
            if dev_t is None:
                dev_t = getattr(avg, "self_cuda_time_total", 0.0)
            is_kernel = str(getattr(avg, "device_type", "")).endswith("CUDA") or (
                avg.self_cpu_time_total == 0 and dev_t > 0)
            if is_kernel and dev_t > 0:
                label = _classify(avg.key)
                gpu[label] = gpu.get(label, 0.0) + dev_t
                kernels.append((dev_t, avg.count, avg.key[:110]))
            elif avg.self_cpu_time_total > 0:
                cpu_ops.append((avg.self_cpu_time_total, avg.count, avg.key[:80]))
                if avg.key in SYNC_OPS:
                    syncs[avg.key] = {"ms_per_step": avg.self_cpu_time_total / 1e3 / self.profile_steps,
                                      "calls_per_step": avg.count / self.profile_steps}
        per_step = {k: v / 1e3 / self.profile_steps for k, v in sorted(gpu.items(), key=lambda kv: -kv[1])}
        busy = sum(per_step.values())
        kernels.sort(reverse=True)
        cpu_ops.sort(reverse=True)
        try:
            table = averages.table(sort_by="self_cuda_time_total" if torch.cuda.is_available()
                                   else "self_cpu_time_total", row_limit=25)
        except Exception as exc:  # noqa: BLE001 - the table is a convenience
            table = f"(no table: {exc})"
        return {
            "steps": self.profile_steps, "wall_ms_per_step": wall * 1e3, "gpu_kernel_ms_per_step": busy,
            "gpu_busy_fraction": busy / (wall * 1e3) if wall > 0 else None, "gpu_ms_per_step_by_category": per_step,
            "top_kernels": [{"ms_per_step": t / 1e3 / self.profile_steps, "calls_per_step": c / self.profile_steps,
                             "name": n} for t, c, n in kernels[:12]],
            "top_cpu_ops": [{"ms_per_step": t / 1e3 / self.profile_steps, "calls_per_step": c / self.profile_steps,
                             "name": n} for t, c, n in cpu_ops[:12]],
            "host_syncs": syncs, "table": table,
        }

    def write(self) -> None:
        if self.written:
            return
        self.written = True
        steps = [{k: (v.item() if torch.is_tensor(v) else v) for k, v in s.items()} for s in self.steps]
        window = [s for s in steps if self.start < s["step"] <= self.end]
        result = {"meta": self.meta, "steps": steps, "logged": self.logged, "start": self.start, "end": self.end,
                  "completed_steps": steps[-1]["step"] if steps else 0}
        if "window_end" in self.t:
            seconds = self.t["window_end"] - self.t["window_start"]
            result["window"] = {"seconds": seconds,
                                **{key: self.meta.get(f"window_{key}", sum(s[key] for s in window))
                                   for key in ("tokens", "sumsq", "docs")},
                                "micro_batches": sum(s["micro"] for s in window), "steps": len(window)}
            result["memory"] = self.mem
        result["startup_seconds"] = (self.t.get("window_start", 0) - self.t.get("train_begin", 0)
                                     if "train_begin" in self.t else None)
        result["process_seconds_to_train_begin"] = self.t.get("train_begin", 0) - self.meta.get("t0", 0)
        result["profile"] = self._profile_summary()
        tmp = self.result_path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(result, fh, indent=1)
        os.replace(tmp, self.result_path)

    def on_train_end(self, args, state, control, **kwargs):
        if int(os.environ.get("RANK", "0")) == 0:
            self.write()
        sys.stdout.flush()
        sys.stderr.flush()
        # The model is not saved: LLaMA-Factory saves after train() returns, and saving is not what is measured.
        os._exit(0)


def _split_trace_stats(mask, state) -> tuple:
    """(real tokens, sum of squared document lengths, documents, longest) of the whole trace a shard belongs to,
    divided by the ranks that share it (each of them counts it; the window's totals add the ranks up). ``mask``:
    the shard of LLaMA-Factory's 2D mask, documents numbered 1, 2, ... when packed, 0 for padding."""
    import deepspeed.comm as dscomm

    parts = [torch.empty_like(mask) for _ in range(state["degree"])]
    dscomm.all_gather(parts, mask.contiguous(), group=state["group"])
    full = torch.cat(parts, dim=1)
    change = torch.ones_like(full, dtype=torch.bool)
    change[:, 1:] = full[:, 1:] != full[:, :-1]
    run = change.flatten().cumsum(0) - 1  # one id per run of equal values
    lengths = torch.zeros(full.numel(), device=full.device, dtype=torch.float64).index_add_(
        0, run, (full.flatten() != 0).to(torch.float64))  # padding runs count 0 tokens
    share = 1.0 / state["degree"]
    return ((full != 0).sum() * share, (lengths * lengths).sum() * share, (lengths > 0).sum() * share, lengths.max())


def runner_args(argv=None) -> argparse.Namespace:
    """``CONFIG RESULT START END PROFILE_STEPS``, positional: torchrun would claim ``--start`` as an abbreviation of
    its own ``--start-method``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("result")
    parser.add_argument("start", type=int, help="measure from the end of this optimizer step")
    parser.add_argument("end", type=int, help="to the end of this one")
    parser.add_argument("profile_steps", type=int, help="then profile this many steps")
    return parser.parse_args(argv)


def cap_memory_from_env() -> None:
    """``R1SFT_BENCH_MEMORY_CAP_GIB``: a smaller GPU emulated, the allocator may not go past it (bench --gpu-mem)."""
    cap = os.environ.get("R1SFT_BENCH_MEMORY_CAP_GIB")
    if cap and torch.cuda.is_available():
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, float(cap) * 2**30 / total))
