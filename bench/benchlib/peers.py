"""Peer arms: TRL's ``SFTTrainer`` (the current release) on the same model folder, data, samples per optimizer step
and measured window as the LLaMA-Factory arms, measured by the same callback (``trl_run.py``).

- ``trl_openr1``: open-r1's ``recipes/OpenR1-Distill-7B/sft/config_distill.yaml`` as published (huggingface/open-r1
  at 1416fa0): no packing, gradient checkpointing (``use_reentrant: false``), liger, bf16 weights, learning rate
  4e-5, ``cosine_with_min_lr`` (min 0.1), ``max_grad_norm`` 0.2, warmup 3%, batch 2 per device; on one GPU, so
  without the ZeRO-3 its 8 GPUs shard with, and with ``sdpa`` for ``flash_attention_2`` (flash-attn cannot be
  installed on the GPU machine); ``max_length`` = the case's cutoff, batch x GA = the case's samples per step.
- ``trl_fast``: TRL's fastest settings that run on one GPU: bfd packing (padding-free), checkpointing only for
  LoRA (full SFT of 1.5B fits without), liger, sdpa, as many packs per step as r1sft's ``--packing`` plan.
- opt-in: ``trl_openr1_bs1`` (batch 1 x GA), ``trl_fast_gc`` / ``trl_fast_nogc`` (the other checkpointing choice),
  ``trl_fast_flex`` (``flex_attention``: its compile did not finish a 1.5B model's first step in 400 s on an H200).

LoRA cases train PEFT LoRA with r1sft's planned rank, alpha, dropout and targets (64, 128, 0.05, all linears) and
the plan's learning rate (open-r1 publishes no LoRA recipe), so that only the trainer differs. Every arm reads the
data in file order (``train_sampling_strategy="sequential"``; bfd packing then groups documents into packs) and
puts the loss on the assistant's tokens as LLaMA-Factory does, where TRL knows the model's chat template
(``trl_run.py`` says which it used; the arm's note shows it).

The peer process gets its own interpreter and ``PYTHONPATH`` (``launch``): ``.venv-peers`` (``make peers``), or
``--peer-python`` / ``--peer-pythonpath`` (``R1SFT_PEER_PYTHONPATH``: the GPU machine's ``/tmp/peersite``), never
LLaMA-Factory's site, and LLaMA-Factory arms never get the peer's.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from benchlib.arms import Arm, Context, planned

BENCH_DIR = Path(__file__).resolve().parent.parent
TRL_RUN = BENCH_DIR / "benchlib" / "trl_run.py"
PEER_VENV_PYTHON = BENCH_DIR.parent / ".venv-peers" / "bin" / "python"
PEER_PYTHONPATH_ENV = "R1SFT_PEER_PYTHONPATH"

# huggingface/open-r1 recipes/OpenR1-Distill-7B/sft/config_distill.yaml, the keys that shape a step's speed and loss
OPENR1 = {
    "learning_rate": 4.0e-05, "lr_scheduler_type": "cosine_with_min_lr", "lr_scheduler_kwargs": {"min_lr_rate": 0.1},
    "max_grad_norm": 0.2,
    "warmup_steps": 0.03,  # warmup_ratio: 0.03; transformers 5 takes a ratio as a float warmup_steps
    "gradient_checkpointing": True, "gradient_checkpointing_kwargs": {"use_reentrant": False},
    "packing": False, "use_liger_kernel": True, "bf16": True, "logging_steps": 1, "seed": 42,
}
OPENR1_PER_DEVICE = 2
ROLES = {"human": "user", "gpt": "assistant", "system": "system"}


def interpreter(peer_python: str | None, peer_pythonpath: str | None) -> tuple[str | None, str]:
    """(python, PYTHONPATH) for peer arms: the given ones, else ``.venv-peers``, else this interpreter with the
    peer site on PYTHONPATH; (None, "") when there is no peer environment."""
    path = peer_pythonpath if peer_pythonpath is not None else os.environ.get(PEER_PYTHONPATH_ENV, "")
    if peer_python:
        return peer_python, path
    if not path and PEER_VENV_PYTHON.exists():
        return str(PEER_VENV_PYTHON), ""
    return (sys.executable, path) if path else (None, "")


def launch(ctx: Context, script_args: list[str], env: dict) -> tuple[list[str], dict]:
    """Command and environment of a peer arm: the peer interpreter, with only the peer site and benchlib on
    PYTHONPATH (the parent's PYTHONPATH carries LLaMA-Factory's site on the GPU machine)."""
    env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ctx.peer_pythonpath, str(BENCH_DIR)) if p)
    env["PYTHONNOUSERSITE"] = "1"
    return [ctx.peer_python, str(TRL_RUN), *script_args], env


# ------------------------------------------------------------------------------------------------ the arms
def _lora(ctx: Context) -> dict | None:
    """r1sft's planned LoRA (rank, alpha, dropout, targets) as PEFT keys, and its learning rate."""
    if ctx.case.method != "lora":
        return None
    c = planned(ctx).config
    target = c.get("lora_target", "all")
    return {"r": int(c["lora_rank"]), "lora_alpha": int(c["lora_alpha"]), "lora_dropout": float(c["lora_dropout"]),
            "target_modules": "all-linear" if target == "all" else target.split(","),
            "learning_rate": float(c["learning_rate"])}


def _arm(ctx: Context, name: str, note: str, sft: dict, packed: bool = False, attn: str = "sdpa") -> Arm:
    lora = _lora(ctx)
    if lora:
        sft = {**sft, "learning_rate": lora.pop("learning_rate")}
        targets = "all linears" if lora["target_modules"] == "all-linear" else ",".join(lora["target_modules"])
        note += (f"; PEFT LoRA r{lora['r']}/alpha {lora['lora_alpha']}/dropout {lora['lora_dropout']} on {targets} "
                 "and lr as r1sft plans")
    sft = {**sft, "max_length": ctx.case.cutoff,
           "model_init_kwargs": {"dtype": "bfloat16", "attn_implementation": attn}}
    config = {"model": str(ctx.model_dir), "assistant_only_loss": True, "peft": lora, "sft": sft}
    return Arm(name, config, note=f"TRL {note}", packed=packed, peer=True)


def openr1(ctx: Context, name: str = "trl_openr1", per_device: int = OPENR1_PER_DEVICE) -> Arm:
    samples = ctx.case.samples_per_step
    pdb = per_device if samples % per_device == 0 else 1
    note = (f"open-r1 distill recipe: no packing, checkpointing, liger, bf16, batch {pdb} x GA {samples // pdb}, "
            "sdpa (not flash-attn), one GPU (no ZeRO-3)")
    return _arm(ctx, name, note, {**OPENR1, "per_device_train_batch_size": pdb,
                                  "gradient_accumulation_steps": samples // pdb})


def fast(ctx: Context, name: str = "trl_fast", checkpointing: bool | None = None, attn: str = "sdpa") -> Arm:
    """bfd packing (padding-free) with r1sft --packing's packs per step; open-r1's optimisation keys, so that the
    losses compare with trl_openr1's."""
    plan = planned(ctx, packing=True).config
    packs = int(plan["per_device_train_batch_size"]) * int(plan["gradient_accumulation_steps"])
    gc = ctx.case.method == "lora" if checkpointing is None else checkpointing
    sft = {**OPENR1, "packing": True, "packing_strategy": "bfd", "padding_free": True, "logging_steps": 10,
           "gradient_checkpointing": gc, "per_device_train_batch_size": 1, "gradient_accumulation_steps": packs,
           "dataloader_num_workers": 0 if ctx.cpu else 4}
    note = (f"fastest: bfd packing (padding-free), {packs} pack{'s' if packs > 1 else ''} of {ctx.case.cutoff} "
            f"per step as r1sft --packing plans, {'checkpointing' if gc else 'no checkpointing'}, liger, {attn}")
    return _arm(ctx, name, note, sft, packed=True, attn=attn)


ARMS = {
    "trl_openr1": openr1,
    "trl_fast": fast,
    "trl_openr1_bs1": lambda ctx: openr1(ctx, "trl_openr1_bs1", per_device=1),
    "trl_fast_gc": lambda ctx: fast(ctx, "trl_fast_gc", checkpointing=True),
    "trl_fast_nogc": lambda ctx: fast(ctx, "trl_fast_nogc", checkpointing=False),
    "trl_fast_flex": lambda ctx: fast(ctx, "trl_fast_flex", attn="flex_attention"),
}


def build(name: str, ctx: Context) -> Arm:
    if not ctx.peer_python:
        raise RuntimeError("no peer environment: run `make peers` (.venv-peers), or pass --peer-python, or set "
                           f"{PEER_PYTHONPATH_ENV} to a site with TRL (the GPU machine's /tmp/peersite)")
    return ARMS[name](ctx)


# ------------------------------------------------------------------------------------ data and bench keys
def write_messages(data_dir: Path, dataset: str, out: Path) -> Path:
    """The bench's sharegpt JSONL (LLaMA-Factory's ``dataset_info.json`` entry) as ``messages`` conversations, in
    the same order; an empty system turn is left out, so that both templates add their default system prompt."""
    info = json.loads((data_dir / "dataset_info.json").read_text())[dataset]
    columns = info.get("columns", {})
    turns_key, system_key = columns.get("messages", "conversations"), columns.get("system", "system")
    lines = []
    for line in (data_dir / info["file_name"]).read_text().splitlines():
        row = json.loads(line)
        messages = [{"role": "system", "content": row[system_key]}] if row.get(system_key) else []
        messages += [{"role": ROLES[t["from"]], "content": t["value"]} for t in row[turns_key]]
        lines.append(json.dumps({"messages": messages}, ensure_ascii=False))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


def bench_keys(arm: Arm, ctx: Context, max_steps: int) -> None:
    """What every arm shares (data, outputs, steps, no checkpoints, seed, file order), in TRL's keys."""
    run_dir = ctx.work / "runs" / ctx.case.name
    arm.config["data"] = str(write_messages(ctx.data_dir, ctx.dataset, run_dir / f"{ctx.dataset}.messages.jsonl"))
    sft = arm.config["sft"]
    sft.update(output_dir=str(run_dir / arm.name), max_steps=max_steps, save_strategy="no", report_to="none",
               seed=42, train_sampling_strategy="sequential", shuffle_dataset=False,
               dataset_num_proc=max(1, min(ctx.preprocessing_workers, 8)))
    if ctx.cpu:  # fp32 on the CPU as LLaMA-Factory runs there; liger's kernels are GPU-only
        sft.update(use_cpu=True, bf16=False, use_liger_kernel=False, dataloader_num_workers=0,
                   dataloader_pin_memory=False)
        sft["model_init_kwargs"] = {**sft["model_init_kwargs"], "dtype": "float32"}
        arm.note += " (CPU smoke: fp32, no liger)"


def annotate(res: dict) -> None:
    """Say in the arm's note which tokens TRL put the loss on (trl_run.py decides it from the chat template)."""
    target = ((res.get("raw") or {}).get("meta") or {}).get("loss_on")
    words = {"assistant": "loss on assistant tokens (assistant_only_loss)",
             "completion": "loss on the completion: TRL has no training template for this chat template, so "
                           "prompt/completion pairs",
             "all": "loss on every token"}
    if target:
        res["note"] += f"; {words.get(target, target)}"
