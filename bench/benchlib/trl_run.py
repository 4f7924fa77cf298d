"""Run one TRL ``SFTTrainer`` config and measure it (the process the benchmark launches for each peer arm).

``python trl_run.py CONFIG.yaml RESULT.json START END PROFILE_STEPS``, in the peer environment (``make peers``'s
``.venv-peers``, or the GPU machine's python with ``PYTHONPATH=/tmp/peersite``), never LLaMA-Factory's: TRL's
current release needs newer ``datasets``/``transformers`` than LLaMA-Factory 0.9.5 allows.

CONFIG (written by ``peers.py``): ``model`` (folder), ``data`` (JSONL of ``messages`` conversations, in the bench
data's order), ``assistant_only_loss``, ``peft`` (LoRA keys or null) and ``sft`` (``SFTConfig`` keywords, with
``model_init_kwargs``). The run
adds ``callback.BenchCallback``, the callback the LLaMA-Factory arms are measured with, and reads each
micro-batch's loss where TRL computes it (its fused LM head, outside the model's forward).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchlib, when run as a script

from benchlib.callback import BenchCallback, cap_memory_from_env, runner_args  # noqa: E402


def _refuse_llamafactory() -> None:
    """The two stacks pin different versions of the same packages: a peer arm that can import LLaMA-Factory runs on
    the wrong ones (and would not be TRL's current release)."""
    if importlib.util.find_spec("llamafactory") is not None:
        raise SystemExit("trl_run: LLaMA-Factory is importable here; run peer arms in the peer environment "
                         "(make peers, or --peer-python / R1SFT_PEER_PYTHONPATH)")


def _loss_target(tokenizer, want_assistant_only: bool) -> str:
    """``assistant``: TRL masks the prompt through a chat template with ``{% generation %}`` markers (the model
    folder's own, or TRL's training copy of a template it knows); ``completion``: the template is unknown to TRL, so
    each conversation becomes prompt + completion, whose loss TRL puts on the completion only (the same tokens)."""
    if not want_assistant_only:
        return "all"
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    if has_generation_markers(tokenizer.chat_template):
        return "assistant"
    try:
        get_training_chat_template(tokenizer)
    except ValueError:
        return "completion"
    return "assistant"


def _dataset(path: str, target: str):
    """The conversations in file order (``datasets.Dataset.from_list`` keeps it)."""
    from datasets import Dataset

    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if target == "completion":
        rows = [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows]
    return Dataset.from_list(rows)


def _sft_config(sft: dict, target: str):
    """``SFTConfig`` from the keywords this TRL/transformers has; the others are returned, not silently lost."""
    from trl import SFTConfig

    known = {f.name for f in dataclasses.fields(SFTConfig)}
    kwargs = {k: v for k, v in sft.items() if k in known}
    kwargs["assistant_only_loss"] = target == "assistant"
    return SFTConfig(**kwargs), sorted(set(sft) - known)


def _peft_config(peft: dict | None):
    if not peft:
        return None
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", **peft)


def _record_losses(trainer, callback: BenchCallback) -> None:
    """TRL computes the loss in ``compute_loss`` from its fused LM head, not in the model's forward, where the
    callback reads LLaMA-Factory's: hand each training micro-batch's loss to the callback (no host sync)."""
    compute = trainer.compute_loss

    def recorded(model, inputs, return_outputs=False, num_items_in_batch=None):
        out = compute(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        if model.training:
            callback.record_loss(out[0] if return_outputs else out, num_items_in_batch is not None)
        return out

    trainer.compute_loss = recorded


def _versions() -> dict:
    import datasets
    import torch
    import transformers
    import trl

    return {m.__name__: m.__version__ for m in (trl, transformers, datasets, torch)}


def main() -> int:
    t0 = time.perf_counter()
    args = runner_args()
    _refuse_llamafactory()
    import yaml
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    config = yaml.safe_load(Path(args.config).read_text())
    tokenizer = AutoTokenizer.from_pretrained(config["model"])
    target = _loss_target(tokenizer, config.get("assistant_only_loss", True))
    sft, dropped = _sft_config(config["sft"], target)
    meta = {"t0": t0, "loss_on": target, "dropped_keys": dropped, "versions": _versions()}
    print(f"trl_run: loss on {target} tokens; {meta['versions']}" + (f"; not in SFTConfig: {dropped}" if dropped
                                                                     else ""), flush=True)
    callback = BenchCallback(args.start, args.end, args.profile_steps, args.result, meta, loss_from_outputs=False)
    cap_memory_from_env()
    trainer = SFTTrainer(model=config["model"], args=sft, train_dataset=_dataset(config["data"], target),
                         processing_class=tokenizer, peft_config=_peft_config(config.get("peft")),
                         callbacks=[callback])
    _record_losses(trainer, callback)
    trainer.train()
    callback.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
