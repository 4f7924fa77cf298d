"""The values of the training and merge recipes, in LLaMA-Factory's sections, with the comment each key carries."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from r1sft.errors import R1sftError
from r1sft.presets import ADAPTER_METHODS
from r1sft.recipe.fit import METHOD_NAMES, Fit
from r1sft.recipe.request import Inputs, Notes, display

# What LLaMA-Factory's tokenized dataset depends on (besides the data files themselves).
TOKENIZATION_KEYS = ("model_name_or_path", "template", "dataset", "dataset_dir", "cutoff_len", "packing",
                     "neat_packing", "enable_thinking", "preserve_thinking", "add_tokens", "add_special_tokens",
                     "split_special_tokens", "mask_history", "train_on_prompt", "max_samples", "tool_format",
                     "default_system", "val_size", "eval_dataset", "seed", "mix_strategy", "interleave_probs",
                     "eval_on_each_dataset", "streaming")
MOE_LORA_TARGET = "q_proj,k_proj,v_proj,o_proj"
MOE_AUX_LOSS = 0.001  # Qwen3-30B-A3B's config.json router_aux_loss_coef
# Where the catalogue's training defaults come from (presets.yaml `defaults`).
ANCHORS = "the Sky-T1 and Bespoke-Stratos recipes"
MERGE_WHY = {
    "adapter_name_or_path": "the training recipe's output_dir",
    "add_special_tokens": "the same tokens as training, or merging fails with a size mismatch",
    "export_device": "merge in CPU RAM: no GPU needed",
    "enable_thinking": "as trained: r1sft merge checks the chat template against it",
    "mask_history": "as trained: r1sft merge checks the chat template against it",
}


def method_dir(inputs: Inputs) -> str:
    return f"saves/{inputs.preset.name}/{inputs.method}"


def train_values(inputs: Inputs, chosen: Fit, notes: Notes, data_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """The training recipe's values in order, and the --set keys no template line places."""
    train: dict[str, Any] = {}
    for section in (_model, _method, _dataset, _output, _train):
        section(train, inputs, chosen, notes, data_dir)
    extra_keys = _passthrough(train, inputs, notes)
    if not inputs.cpu and "tokenized_path" not in train:
        # LLaMA-Factory reuses a tokenized_path as it is ("will ignore other data arguments"): one folder per set
        # of everything tokenization depends on, so a packed and an unpacked recipe never share one.
        train["tokenized_path"] = tokenized_path(train, inputs.preset.name, inputs.datasets)
        notes.why["tokenized_path"] = "tokenize once, reuse: delete it after changing the data"
    return train, extra_keys


def _model(train: dict, inputs: Inputs, chosen: Fit, notes: Notes, data_dir: Path) -> None:
    train["model_name_or_path"] = inputs.model_path
    if inputs.special_tokens:
        train["add_special_tokens"] = ",".join(inputs.special_tokens)
        notes.why["add_special_tokens"] = (f"tags {'/'.join(inputs.datasets)} needs (dataset_info.json "
                                           "r1sft.special_tokens)")
        if inputs.method != "full":
            notes.why["add_special_tokens"] += "; embeddings become trainable"
    if inputs.method == "qlora":
        train["quantization_bit"] = 4
        train["quantization_method"] = "bnb"
        notes.why["quantization_bit"] = "QLoRA: 4-bit NF4 base weights (bitsandbytes)"
    train["trust_remote_code"] = False
    train["flash_attn"] = "sdpa"
    train["enable_liger_kernel"] = chosen.liger
    train["disable_gradient_checkpointing"] = not chosen.gradient_checkpointing
    if chosen.offload_checkpoints or inputs.offload_override is not None:
        train["use_unsloth_gc"] = chosen.offload_checkpoints


def _method(train: dict, inputs: Inputs, chosen: Fit, notes: Notes, data_dir: Path) -> None:
    train["stage"] = "sft"
    train["do_train"] = True
    train["finetuning_type"] = "full" if inputs.method == "full" else "lora"
    if inputs.method != "full":
        lora = inputs.defaults["lora"]
        train["lora_rank"] = int(lora["rank"])
        train["lora_alpha"] = int(lora["alpha"])
        train["lora_dropout"] = float(lora["dropout"])
        if not train["lora_dropout"]:
            notes.why["lora_dropout"] = "LLaMA-Factory's default; 0.05: -7% tokens/s (docs/bench/h100-2026-12-07/)"
        train["lora_target"] = str(lora["target"])
        if inputs.preset.shape.moe:
            train["lora_target"] = MOE_LORA_TARGET
            notes.why["lora_target"] = ("MoE: attention only; the experts are fused 3-D weights (no linears to "
                                        "adapt) and the router stays frozen")
    elif inputs.preset.shape.moe:
        train["moe_aux_loss_coef"] = MOE_AUX_LOSS
        notes.why["moe_aux_loss_coef"] = "keep the router's load-balancing loss (Qwen3-MoE's router_aux_loss_coef)"
    if inputs.method == "dora":
        train["use_dora"] = True
    if chosen.deepspeed:
        train["deepspeed"] = f"ds_configs/{chosen.deepspeed}.json"


def _dataset(train: dict, inputs: Inputs, chosen: Fit, notes: Notes, data_dir: Path) -> None:
    train["dataset"] = ",".join(inputs.datasets)
    train["dataset_dir"] = display(data_dir).as_posix()
    train["template"] = inputs.template
    if inputs.enable_thinking is not None:
        train["enable_thinking"] = inputs.enable_thinking
        notes.why["template"] = "Qwen3 reasoning template"
        notes.why["enable_thinking"] = (
            "THINK=on: train the <think> block; a reply without one gets an empty block" if inputs.enable_thinking
            else "THINK=off: the empty <think> block sits in the prompt, as Qwen3 serves enable_thinking=False")
    elif inputs.template == "qwen3_nothink":
        notes.why["template"] = "plain ChatML, no <think> handling"
    _history(train, inputs, notes, data_dir)
    train["cutoff_len"] = inputs.cutoff
    if chosen.samples_per_pack is not None:
        train["packing"] = True
        train["neat_packing"] = True
    train["preprocessing_num_workers"] = 1 if inputs.cpu else 16
    train["dataloader_num_workers"] = 0 if inputs.cpu else 4


def _history(train: dict, inputs: Inputs, notes: Notes, data_dir: Path) -> None:
    """mask_history unless the data kept earlier replies' reasoning (r1sft convert --earlier-reasoning keep)."""
    from r1sft.recipe.data import datasets_keeping_earlier_reasoning

    keeping = datasets_keeping_earlier_reasoning(inputs.datasets, data_dir)
    if keeping:
        notes.reason(f"{', '.join(keeping)} kept earlier replies' reasoning: every reply is trained, with it in "
                     "context")
        return
    train["mask_history"] = True
    notes.why["mask_history"] = "multi-turn rows: train the last reply; earlier ones are context, as served"


def _output(train: dict, inputs: Inputs, chosen: Fit, notes: Notes, data_dir: Path) -> None:
    tiny = inputs.preset.tiny
    train["output_dir"] = f"{method_dir(inputs)}/sft"
    train["logging_steps"] = 1 if tiny else 10
    if tiny:
        train["save_strategy"] = "no"
        notes.why["save_strategy"] = "a demo: no checkpoints, so a rerun trains afresh; the adapter is saved at the end"
    else:  # only what the strategy asked for (--set save_strategy) uses: no key that would do nothing
        from r1sft.recipe.overrides import strategy

        wanted = strategy(inputs.passthrough, "save_strategy")
        if wanted == "steps":
            train["save_steps"] = 200
        if wanted != "no":
            train["save_total_limit"] = 2
    train["plot_loss"] = True
    if tiny:
        train["overwrite_output_dir"] = True
        notes.why["overwrite_output_dir"] = "the demo may be run again"
    train["report_to"] = "tensorboard"
    notes.why["report_to"] = "loss curves: tensorboard --logdir <output_dir>/runs"


def _train(train: dict, inputs: Inputs, chosen: Fit, notes: Notes, data_dir: Path) -> None:
    defaults, method, tiny, cpu = inputs.defaults, inputs.method, inputs.preset.tiny, inputs.cpu
    train["per_device_train_batch_size"] = chosen.per_device
    train["gradient_accumulation_steps"] = chosen.grad_accum
    train["learning_rate"] = float(defaults["learning_rate"][method])
    kind = METHOD_NAMES[method] + (" SFT" if method == "full" else "")
    notes.why["learning_rate"] = f"{kind} default" + (" for a random-weight tiny model" if tiny else "")
    train["num_train_epochs"] = float(defaults["epochs"])
    if defaults.get("max_steps") and "num_train_epochs" not in inputs.passthrough:  # asking for epochs: no cap
        train["max_steps"] = int(defaults["max_steps"])
        notes.why["max_steps"] = f"a demo: {defaults['max_steps']} steps of {inputs.global_batch} samples (wins over epochs)"
    train["lr_scheduler_type"] = str(defaults["scheduler"])
    if "warmup_ratio" not in inputs.passthrough:  # the user's own (deprecated) key wins; never both
        # transformers 5.6 deprecates warmup_ratio: warmup_steps below 1 is the same ratio of the steps
        train["warmup_steps"] = float(defaults["warmup_ratio"])
        notes.why["warmup_steps"] = "below 1: a ratio of the training steps"
    if not tiny:
        _anchor_note(train, inputs, notes)
    if cpu and not chosen.deepspeed:
        train["use_cpu"] = True
        notes.why["use_cpu"] = "no GPU: bf16 would fail on a CPU"
    elif cpu:
        # use_cpu breaks DeepSpeed's batch arithmetic under torchrun (it sees a world of 1); with no GPU visible,
        # HF picks the CPU anyway and DeepSpeed runs on its CPU accelerator.
        notes.why["deepspeed"] = f"DEEPSPEED={chosen.deepspeed} on CPU (no use_cpu: it confuses DeepSpeed's world size)"
    else:
        train["bf16"] = True
    train["dataloader_pin_memory"] = not cpu
    if not cpu:
        train["accelerator_config"] = {"non_blocking": True}
        notes.why["accelerator_config"] = "copy the pinned batch to the GPU without a host sync (+1% tokens/s, H100)"
    train["ddp_timeout"] = 180000000
    notes.why["ddp_timeout"] = "rank 0 tokenizes everything first: keep the other ranks from timing out"


def _anchor_note(train: dict, inputs: Inputs, notes: Notes) -> None:
    """One header line naming where the defaults the request kept come from."""
    kept = [f"{train[key]:g} epochs" if key == "num_train_epochs" else
            f"warmup {train[key]:g}" if key == "warmup_steps" else str(train[key])
            for key in ("num_train_epochs", "lr_scheduler_type", "warmup_steps")
            if key in train and key not in inputs.passthrough]
    if inputs.request.global_batch is None:
        kept.append(f"global batch {inputs.global_batch}")
    if kept:
        notes.header.append(f"defaults of {ANCHORS}: {', '.join(kept)}")


def _passthrough(train: dict, inputs: Inputs, notes: Notes) -> list[str]:
    """The remaining --set keys, checked against LLaMA-Factory's own; returns those no template line places."""
    overrides = inputs.passthrough
    if not overrides:
        return []
    from r1sft.recipe import lf

    lf.refuse_unknown_keys(overrides, lf.TRAIN, "--set")
    bad = lf.type_problems(overrides, lf.TRAIN)
    if bad:
        raise R1sftError(f"--set: {bad[0]}")
    from r1sft.recipe.overrides import implied

    implies, _ = implied(train, overrides)  # save_steps on a recipe that saves nothing: save_strategy: steps
    extra_keys = [key for key in {**overrides, **implies} if key not in train]
    for key, value in overrides.items():
        train[key] = value
        notes.why[key] = "set on the command line"
    for key, value in implies.items():
        train[key] = value
        notes.why[key] = f"{'save' if key == 'save_strategy' else 'eval'}_steps is set on the command line"
    return extra_keys


def tokenized_path(train: dict, preset_name: str, datasets: list[str]) -> str:
    """The tokenized-dataset folder for ``train``'s tokenization settings (the launcher recomputes it for edits)."""
    settings = json.dumps({key: train.get(key) for key in TOKENIZATION_KEYS}, sort_keys=True, default=str)
    digest = hashlib.sha256(settings.encode()).hexdigest()[:8]
    packed = "-packed" if train.get("packing") else ""
    return (f".cache/tokenized/{preset_name}-{train['template']}-{'+'.join(datasets)}-{train['cutoff_len']}"
            f"{packed}-{digest}")


def merge_values(inputs: Inputs, train: dict) -> dict[str, Any] | None:
    """The export recipe of an adapter (None for full SFT): the base model built as training built it."""
    if inputs.method not in ADAPTER_METHODS:
        return None
    merge = {
        "model_name_or_path": inputs.model_path,
        "adapter_name_or_path": train["output_dir"],
        "template": train["template"],
        "finetuning_type": "lora",
        "trust_remote_code": False,
    }
    for key in ("trust_remote_code", "add_tokens", "add_special_tokens", "resize_vocab", "enable_thinking",
                "mask_history"):
        if key in train:
            merge[key] = train[key]
    merge.update({"export_dir": f"{method_dir(inputs)}/merged", "export_size": 5, "export_device": "cpu",
                  "export_legacy_format": False})
    return merge
