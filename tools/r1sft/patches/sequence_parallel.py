"""DeepSpeed Ulysses sequence parallelism in LLaMA-Factory's trainer: each trace split over N GPUs.

LLaMA-Factory 0.9.5 has no sequence parallelism, and transformers 5.6's Trainer reaches DeepSpeed's Arctic Long
Sequence Training (``deepspeed.runtime.sequence_parallel.ulysses_sp``) only through accelerate >= 1.12's
``parallelism_config``, while LLaMA-Factory pins accelerate <= 1.11. This patch wires DeepSpeed's own pieces into
the trainer at three seams of transformers' ``Trainer``, once the processes exist:

- ``get_train_dataloader``: creates the groups of N consecutive ranks and registers
  ``UlyssesSPAttentionHF`` with transformers (``register_with_transformers``: each layer's attention swaps the
  sequence shard for a share of the heads by all-to-all, attends over the whole trace, and swaps back). The
  loader it returns feeds ``UlyssesSPDataLoaderAdapter``, which gathers the N ranks' batches and hands each rank
  its shard of every one of them, labels shifted before the split (so the token at a shard's end predicts the
  next shard's first). Before the adapter every batch gets ``position_ids``: LLaMA-Factory's own arange per row,
  or, for packed rows (its 2D mask numbers the documents), positions that restart at each document, which is how
  the attention here finds the document boundaries of the whole trace after the all-to-all (varlen, as
  ``r1sft.patches.packed_attention``; no L x L mask is built anywhere).
- ``get_sp_size``: N, so the trainer counts N micro-batches per loader batch and global batch = per-device batch
  x accumulation x (world / N), as its own ALST integration does.
- ``skip_first_batches``: a resumed epoch skips whole loader batches (accumulation is a multiple of N).

The loss needs no patch. Each rank's shard carries the pre-shifted labels as ``labels`` (and ``shift_labels``, so
the model does not shift again); the trainer counts them over the step's micro-batches and all ranks
(``average_tokens_across_devices``), so every token of every trace is counted once, and each rank's loss is its
shard's summed cross-entropy / that count x world size, the trainer's own token-mean loss. DeepSpeed is not told
about the groups (no ``mpu``): DDP and every ZeRO stage then average the gradients over all ranks alike, which
adds the shards' partial gradients up. (With an ``mpu`` ZeRO-0/1/2 divide by world / N and ZeRO-3 with
reduce-scatter by world: a 2-process check on this stack found the gradients N x apart between stages.)
Checkpoints are the data-parallel ones: every rank holds the same weights.

``r1sft train`` sets ``R1SFT_SEQUENCE_PARALLEL=N`` for recipes planned with ``--sequence-parallel N`` (the
recipe's ``# r1sft:`` header); ``r1sft/patches/site/sitecustomize.py`` installs it in every torchrun worker.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from r1sft.patches import packed_attention
from r1sft.patches.packed_attention import row_positions, trace_segments

if TYPE_CHECKING:
    from r1sft.patches.registry import LaunchPlan

ENV_VAR = "R1SFT_SEQUENCE_PARALLEL"
ANNOUNCEMENT = "sequence parallelism: each trace split over the ranks of its group (DeepSpeed Ulysses)"
FALLBACK = "training stops: without it every GPU would hold whole traces and N times the planned samples"
IGNORE_INDEX = -100
# LLaMA-Factory losses that read unshifted labels or a reference model: not the token-mean cross-entropy the
# shards add up to.
OTHER_LOSSES = ("use_dft_loss", "use_eaft_loss", "use_asft_loss")

_state: dict[str, Any] = {"degree": 0, "originals": {}, "group": None, "rank": 0, "mpu": None,
                          "positions": None, "segments": None, "forwards": 0, "packed_forwards": 0}


def degree(environ: Mapping[str, str] | None = None) -> int:
    """N from ``R1SFT_SEQUENCE_PARALLEL`` (1: off)."""
    value = (os.environ if environ is None else environ).get(ENV_VAR, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else 1


def enabled_by_env(environ: Mapping[str, str] | None = None) -> bool:
    return degree(environ) > 1


def wanted(config: Mapping[str, Any], environ: Mapping[str, str], plan: LaunchPlan) -> str | None:
    n = plan.sequence_parallel
    return f"each trace split over {n} ranks (--sequence-parallel {n})" if n > 1 else None


def on_value(plan: LaunchPlan) -> str:
    return str(plan.sequence_parallel)


# ----------------------------------------------------------------------------- what it cannot serve (one line each)
def head_problem(heads: int, kv_heads: int, n: int) -> str | None:
    """DeepSpeed's rule: N divides the query heads and divides the key/value heads or is a multiple of them
    (then each rank gets a copy of one)."""
    if heads % n:
        return f"{n} does not divide the model's {heads} attention heads"
    if kv_heads % n and n % kv_heads:
        return f"{n} neither divides the model's {kv_heads} key/value heads nor is a multiple of them"
    return None


def config_problems(config: Mapping[str, Any], n: int) -> list[str]:
    """Why a LLaMA-Factory training ``config`` cannot run with its traces split over ``n`` ranks."""
    problems = []
    if config.get("quantization_bit"):
        problems.append("QLoRA (quantization_bit) is not served: bitsandbytes' 4-bit weights under sharded "
                        "multi-GPU training are untested here, and splitting traces saves activations, not weights; "
                        "use --method lora")
    if str(config.get("flash_attn", "auto")) not in ("auto", "sdpa"):
        problems.append(f"flash_attn: {config.get('flash_attn')}: the split attention runs on sdpa (flash_attn: sdpa)")
    if config.get("do_eval") or config.get("val_size") or config.get("eval_dataset") or \
            str(config.get("eval_strategy", "no")) != "no":
        problems.append("evaluation during training is not served (its batches would not be split): drop "
                        "do_eval/val_size/eval_dataset/eval_strategy and evaluate afterwards with r1sft eval")
    problems += [f"{key}: the split loss is the token-mean cross-entropy; drop {key}"
                 for key in OTHER_LOSSES if config.get(key)]
    if float(config.get("label_smoothing_factor", 0) or 0):
        problems.append("label_smoothing_factor: the split loss is the plain token-mean cross-entropy")
    if config.get("average_tokens_across_devices") is False:
        problems.append("average_tokens_across_devices: false: the shards' losses only add up over the tokens "
                        "of all ranks")
    ga = config.get("gradient_accumulation_steps", 1)
    if isinstance(ga, int) and ga % n:
        problems.append(f"gradient_accumulation_steps {ga} is not a multiple of {n}: each optimizer step must "
                        f"hold whole rounds of the {n} ranks' batches")
    return problems


# ----------------------------------------------------------------------------- the patch
def install() -> bool:
    """Wrap the trainer's seams (idempotent). Raises SystemExit when DeepSpeed's ALST is missing: a launch that
    asked for split traces must not train whole ones instead."""
    n = degree()
    try:
        import transformers.trainer as hf_trainer
        from deepspeed.runtime.sequence_parallel.ulysses_sp import UlyssesSPAttentionHF  # noqa: F401
    except ImportError as exc:
        print(f"r1sft: {ENV_VAR}={n}: DeepSpeed's Ulysses (deepspeed>=0.18.2) is not importable ({exc}); "
              f"{FALLBACK}", file=sys.stderr)
        raise SystemExit(2) from exc
    _state["degree"] = n
    originals = _state["originals"]
    if not originals:
        trainer = hf_trainer.Trainer
        originals.update(get_train_dataloader=trainer.get_train_dataloader, get_sp_size=trainer.get_sp_size,
                         skip_first_batches=hf_trainer.skip_first_batches)
        trainer.get_train_dataloader = _get_train_dataloader
        trainer.get_sp_size = _get_sp_size
        hf_trainer.skip_first_batches = _skip_first_batches
    return True


def uninstall() -> None:
    """Give transformers its trainer back (for tests; the attention registration stays with its process)."""
    import transformers.trainer as hf_trainer

    originals = _state["originals"]
    if originals:
        hf_trainer.Trainer.get_train_dataloader = originals["get_train_dataloader"]
        hf_trainer.Trainer.get_sp_size = originals["get_sp_size"]
        hf_trainer.skip_first_batches = originals["skip_first_batches"]
    originals.clear()
    _state["degree"] = 0


def report() -> None:
    if _state["forwards"]:
        print(f"r1sft: sequence parallelism: {_state['forwards']} forwards split over {_state['degree']} ranks, "
              f"{_state['packed_forwards']} with packed documents", file=sys.stderr)


def _get_sp_size(self) -> int:
    return _state["degree"] if _state["degree"] > 1 else _state["originals"]["get_sp_size"](self)


def _get_train_dataloader(self):
    original = _state["originals"]["get_train_dataloader"]
    n = _state["degree"]
    if n <= 1:
        return original(self)
    _refuse_trainer(self, n)
    collator = self.data_collator
    if getattr(collator, "block_diag_attn", False):
        # LLaMA-Factory would expand the packed rows' document numbers into an L x L mask; the numbers become
        # position_ids here instead.
        collator.block_diag_attn = False
    collator.keep_2d_mask = True  # the shards are cut by it (packed_attention's collator would drop it)
    loader = original(self)
    _set_up(self, n)
    tokenizer = getattr(collator, "tokenizer", None)
    pad_id = getattr(tokenizer, "pad_token_id", None) or 0
    return ShardedLoader(loader, n, self.args.per_device_train_batch_size, pad_id, self.args.device)


def _refuse_trainer(trainer, n: int) -> None:
    args = trainer.args
    problems = []
    if not trainer.model_accepts_loss_kwargs:
        problems.append("the model does not take the step's token count (model_accepts_loss_kwargs is off, as for "
                        "LLaMA-Factory's multimodal models)")
    if trainer.compute_loss_func is not None or trainer.label_smoother is not None:
        problems.append("a custom loss or label smoothing is set; the split loss is the token-mean cross-entropy")
    if not args.average_tokens_across_devices:
        problems.append("average_tokens_across_devices is off")
    if args.gradient_accumulation_steps % n:
        problems.append(f"gradient_accumulation_steps {args.gradient_accumulation_steps} is not a multiple of {n}")
    if problems:
        raise RuntimeError(f"r1sft: {ENV_VAR}={n}: " + "; ".join(problems))


def _set_up(trainer, n: int) -> None:
    """Groups of ``n`` ranks and the split attention, once per process."""
    if _state["mpu"] is not None:
        return
    import torch.distributed as tdist

    if not tdist.is_initialized():
        raise RuntimeError(f"r1sft: {ENV_VAR}={n} needs the processes torchrun starts (run it with r1sft train)")
    world, local = tdist.get_world_size(), int(os.environ.get("LOCAL_WORLD_SIZE", tdist.get_world_size()))
    if world % n or local % n:
        raise RuntimeError(f"r1sft: {ENV_VAR}={n} does not divide the {local} processes per node ({world} in all): "
                           "a group's all-to-alls must stay within a node")
    import deepspeed
    import deepspeed.comm as dscomm
    from deepspeed.runtime.sequence_parallel.ulysses_sp import UlyssesSPAttentionHF
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if not dscomm.is_initialized():  # DDP runs: DeepSpeed's collectives wrap the process group torch made
        deepspeed.init_distributed(dist_backend=tdist.get_backend(), verbose=False)
    model = trainer.model
    text = model.config.get_text_config()
    problem = head_problem(text.num_attention_heads, text.num_key_value_heads, n)
    if problem:
        raise RuntimeError(f"r1sft: {ENV_VAR}={n}: {problem}")
    if model.config._attn_implementation != "sdpa":
        raise RuntimeError(f"r1sft: {ENV_VAR}={n}: attention is {model.config._attn_implementation}, expected sdpa")
    _state["inner"] = ALL_ATTENTION_FUNCTIONS["sdpa"]  # transformers' sdpa, or r1sft.patches.packed_attention's
    ALL_ATTENTION_FUNCTIONS["sdpa"] = _whole_trace_attention  # what Ulysses calls between its two all-to-alls
    mpu = UlyssesSPAttentionHF.register_with_transformers(
        model_name_or_path=model, core_attn_implementation="sdpa", sequence_parallel_size=n,
        micro_batch_size=trainer.args.per_device_train_batch_size, seq_length_is_variable=True)
    ALL_ATTENTION_FUNCTIONS["sdpa"] = functools.partial(_shard_attention, ALL_ATTENTION_FUNCTIONS["sdpa"])
    # Ulysses drops every mask (position_ids carry the boundaries): building the shard's own would be waste.
    ALL_MASK_ATTENTION_FUNCTIONS.register("sdpa", _no_mask)
    _state.update(mpu=mpu, group=mpu.get_sequence_parallel_group(), rank=mpu.get_sequence_parallel_rank())


def _no_mask(*args, **kwargs):
    return None


def _shard_attention(ulysses, module, query, key, value, attention_mask, *args, **kwargs):
    """Per layer, before Ulysses: the whole trace's document boundaries, worked out once per forward (every
    layer, and the recomputation under checkpointing, gets the same shard ``position_ids`` object)."""
    positions = kwargs.get("position_ids")
    if positions is not None and _state["positions"] is not positions:
        import deepspeed.comm as dscomm
        import torch

        gathered = [torch.empty_like(positions) for _ in range(_state["degree"])]
        dscomm.all_gather(gathered, positions.contiguous(), group=_state["group"])
        _state["positions"], _state["segments"] = positions, trace_segments(torch.cat(gathered, dim=1))
        _state["forwards"] += 1
        _state["packed_forwards"] += _state["segments"] is not None
    return ulysses(module, query, key, value, attention_mask, *args, **kwargs)


def _whole_trace_attention(module, query, key, value, attention_mask, *args, **kwargs):
    """Attention over the whole trace for this rank's heads: per document where the trace is packed, else
    causal sdpa (no mask: Ulysses has dropped it)."""
    segments = _state["segments"]
    if segments is None or not module.training:
        return _state["inner"](module, query, key, value, attention_mask, *args, **kwargs)
    cu_seqlens, max_len = segments
    if int(cu_seqlens[-1]) != query.shape[0] * query.shape[2]:
        raise RuntimeError("r1sft: sequence parallelism: document boundaries do not match the attention's tokens")
    return packed_attention.attend_segments(query, key, value, cu_seqlens, max_len, kwargs.get("scaling")), None


# ----------------------------------------------------------------------------- the data
def prepare_batch(batch: dict, n: int, rows: int, pad_id: int, length: int = 0) -> dict:
    """A collated batch as UlyssesSPDataLoaderAdapter wants it: ``position_ids``, padded on the right to a length
    divisible by ``n`` (and at least ``length``), and ``rows`` rows (Ulysses reshapes by a fixed batch size; a
    short last batch gets rows that train nothing). Padding tokens have no label and come after every real one."""
    import torch
    import torch.nn.functional as F

    mask = batch.get("attention_mask")
    if mask is None or mask.dim() != 2:
        raise RuntimeError("r1sft: sequence parallelism expects LLaMA-Factory's 2D attention_mask")
    batch = dict(batch)
    batch["position_ids"] = row_positions(mask)
    have = mask.shape[0]
    target = max(length, mask.shape[1])
    extra = target - mask.shape[1] + (-target % n)
    fill = {"input_ids": pad_id, "labels": IGNORE_INDEX, "attention_mask": 0}
    for key in list(batch):
        value = batch[key]
        if not torch.is_tensor(value) or value.dim() != 2:
            continue
        if key == "position_ids":
            padded = torch.cat([value, value[:, -1:] + 1 + torch.arange(extra).expand(have, extra)], dim=1)
        else:
            padded = F.pad(value, (0, extra), value=fill.get(key, 0))
        if have < rows:
            padded = torch.cat([padded, torch.full((rows - have, padded.shape[1]), fill.get(key, 0),
                                                   dtype=padded.dtype)])
        batch[key] = padded
    return batch


class _Prepared:
    """The loader's batches after ``prepare_batch``: what the adapter reads."""

    def __init__(self, loader, n: int, rows: int, pad_id: int):
        self.loader, self.n, self.rows, self.pad_id = loader, n, rows, pad_id

    def __iter__(self):
        import torch
        import torch.distributed as tdist

        # gloo (the CPU test path) gathers only equal shapes: the group's batches are padded to its longest;
        # NCCL gathers uneven ones, so GPU batches keep their own length
        even = tdist.get_backend(_state["group"]) == "gloo"
        for batch in self.loader:
            length = 0
            if even:
                lengths = [torch.zeros(1, dtype=torch.int64) for _ in range(self.n)]
                tdist.all_gather(lengths, torch.tensor([batch["input_ids"].shape[1]]), group=_state["group"])
                length = int(max(lengths))
            yield prepare_batch(batch, self.n, self.rows, self.pad_id, length)

    def __len__(self):
        return len(self.loader)


class ShardedLoader:
    """LLaMA-Factory's train loader, each batch split over the ``n`` ranks of a group by DeepSpeed's
    UlyssesSPDataLoaderAdapter: ``n`` micro-batches per loader batch. Anything else (dataset, set_epoch, batch
    size) is the loader's."""

    def __init__(self, loader, n: int, rows: int, pad_id: int, device):
        self.loader, self.n, self.rows, self.pad_id, self.device = loader, n, rows, pad_id, device

    def __len__(self) -> int:
        return len(self.loader)  # loader batches: the trainer multiplies by get_sp_size()

    def __getattr__(self, name: str):
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __iter__(self):
        from deepspeed.runtime.sequence_parallel.ulysses_sp import UlyssesSPDataLoaderAdapter

        adapter = UlyssesSPDataLoaderAdapter(_Prepared(self.loader, self.n, self.rows, self.pad_id),
                                             sp_rank=_state["rank"], sp_group=_state["group"], sp_world_size=self.n,
                                             device=self.device)
        for shard in adapter:
            # the trainer counts ``labels`` for the step's token total, the model computes the loss when it has
            # them, and ``shift_labels`` tells the loss that they are already shifted
            shard["labels"] = shard["shift_labels"]
            yield shard

    def skipped(self, micro_batches: int) -> ShardedLoader:
        if micro_batches % self.n:
            raise RuntimeError(f"r1sft: sequence parallelism: cannot resume {micro_batches} micro-batches into an "
                               f"epoch (not whole rounds of {self.n})")
        skip = _state["originals"]["skip_first_batches"]
        return ShardedLoader(skip(self.loader, micro_batches // self.n), self.n, self.rows, self.pad_id, self.device)


def _skip_first_batches(dataloader, num_batches: int = 0):
    if isinstance(dataloader, ShardedLoader):
        return dataloader.skipped(num_batches)
    return _state["originals"]["skip_first_batches"](dataloader, num_batches)
