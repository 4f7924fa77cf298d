"""Merge a trained adapter with ``llamafactory-cli export`` and prove the merge: same logits as base + adapter.

``r1sft merge RECIPE_merge.yaml`` (``merge/cli.py``) runs the export, then loads the merged model and compares its logits on a probe
conversation with those of the base model carrying the adapter (fp32, CPU). ``r1sft verify-merge`` runs only the
comparison. Merging is where silent damage happens (a vocabulary resized in training but not in the merge, a merge
into a quantized model), so r1sft checks the numbers instead of trusting the files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from r1sft.errors import R1sftError
from r1sft.paths import REPO_ROOT
from r1sft.yamlio import load_yaml

PROBE_MESSAGES = [
    {"role": "user", "content": "What is 17 + 25? Think step by step."},
    {"role": "assistant", "content": "<think>\n17 + 25 = 42\n</think>\n\nThe answer is \\boxed{42}."},
]
DEFAULT_TOLERANCE = 1e-4


def _probe_ids(tokenizer):
    import torch

    text = tokenizer.apply_chat_template(PROBE_MESSAGES, tokenize=False)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    return ids if ids.shape[1] > 0 else torch.tensor([[0]])


def merged_logit_difference(base: str, adapter: str, merged: str) -> float:
    """Max |logits(merged) - logits(base + adapter)| on the probe conversation, in fp32 on CPU."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(merged)
    ids = _probe_ids(tokenizer)
    with torch.no_grad():
        merged_model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
        merged_logits = merged_model(ids).logits
        del merged_model
        base_model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        if base_model.get_input_embeddings().weight.shape[0] < len(tokenizer):
            # Training added tokens (add_special_tokens): the adapter carries the resized embeddings.
            base_model.resize_token_embeddings(len(tokenizer))
        adapted = PeftModel.from_pretrained(base_model, adapter).eval()
        adapted_logits = adapted(ids).logits
    if merged_logits.shape != adapted_logits.shape:
        raise R1sftError(f"merged model logits {tuple(merged_logits.shape)} != base + adapter "
                         f"{tuple(adapted_logits.shape)}: vocabulary sizes differ (add_special_tokens?)")
    return float((merged_logits - adapted_logits).abs().max())


def verify_merge(base: str, adapter: str, merged: str, tolerance: float = DEFAULT_TOLERANCE) -> float:
    diff = merged_logit_difference(base, adapter, merged)
    if diff >= tolerance:
        raise R1sftError(f"{merged}: logits differ from base + adapter by {diff:.3g} (tolerance {tolerance:g})")
    return diff


def export(merge_recipe: str | os.PathLike) -> Path:
    """Run ``llamafactory-cli export`` on a merge recipe from the project root; return the export folder."""
    recipe = Path(merge_recipe).resolve()
    config = load_yaml(recipe)
    for key in ("model_name_or_path", "adapter_name_or_path", "export_dir"):
        if not config.get(key):
            raise R1sftError(f"{merge_recipe}: missing {key}")
    if config.get("quantization_bit"):
        raise R1sftError(f"{merge_recipe}: quantization_bit is set; never merge an adapter into a quantized model")
    adapter = REPO_ROOT / config["adapter_name_or_path"]
    if not adapter.exists():
        raise R1sftError(f"{merge_recipe}: adapter {config['adapter_name_or_path']} does not exist; train first")
    cli = shutil.which("llamafactory-cli", path=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    if cli is None:
        raise R1sftError("llamafactory-cli not found: run `make setup`")
    env = dict(os.environ)
    if str(config.get("export_device", "cpu")) == "cpu":
        # a CPU merge: say so to DeepSpeed (imported by save_pretrained), which otherwise warns it found no GPU
        env.setdefault("DS_ACCELERATOR", "cpu")
    code = subprocess.call([cli, "export", str(recipe)], cwd=REPO_ROOT, env=env)
    if code != 0:
        raise R1sftError(f"llamafactory-cli export {merge_recipe} failed with exit code {code}")
    return REPO_ROOT / config["export_dir"]


def resolve(path: str) -> str:
    """Local folders relative to the project root (as in recipes); anything else is a hub id."""
    candidate = REPO_ROOT / path
    return str(candidate) if candidate.exists() else path


def _tensor(folder: Path, suffix: str):
    """The checkpoint tensor whose name ends with ``suffix`` (single or sharded safetensors), or None."""
    import json

    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else \
        [p.name for p in folder.glob("*.safetensors")]
    for name in files:
        with safe_open(str(folder / name), "pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (a safe_open handle is not iterable)
                if key.endswith(suffix):
                    return handle.get_tensor(key)
    return None


def untie_trained_embeddings(export_dir: str | os.PathLike) -> str | None:
    """Untie the config of a tied model whose adapter trained its input and output embeddings apart.

    New special tokens make LLaMA-Factory train ``embed_tokens`` and ``lm_head`` as two separate copies
    (modules_to_save); the export then saves two different matrices under ``tie_word_embeddings: true``.
    transformers 5 keeps both, but vLLM and older transformers tie them on load and drop one trained matrix, so the
    served model would not be the trained one.
    """
    import torch
    from transformers import AutoConfig

    folder = Path(export_dir)
    config = AutoConfig.from_pretrained(folder)
    if not getattr(config, "tie_word_embeddings", False):
        return None
    embed, head = _tensor(folder, "embed_tokens.weight"), _tensor(folder, "lm_head.weight")
    if embed is None or head is None or torch.equal(embed, head):
        return None
    config.tie_word_embeddings = False
    config.save_pretrained(folder)
    return (f"{folder / 'config.json'}: tie_word_embeddings set to false: the adapter trained the input and output "
            "embeddings apart (new special tokens), and a loader that ties them would drop one")
