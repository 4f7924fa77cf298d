"""Random-initialised models of real shapes and synthetic R1-length reasoning data, both built offline.

The model keeps its real vocabulary (151936 / 152064 / 128256 rows), so the logits and embedding cost is real, but
uses the tiny family tokenizer from ``r1sft.tiny`` (copied next to the config): token ids stay below ~1200, inside
the real vocabulary. Document lengths are controlled in tokens of that tokenizer.

Run as a script (``python -m benchlib.synth model ...``) so that the CUDA context used for building never lives in
the benchmark's own process (it would show up in the measured peak memory).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json",
                   "generation_config.json")


def tiny_dir(family: str) -> Path:
    from r1sft.tiny import ensure_tiny_model

    return ensure_tiny_model(f"tiny-{family}")


def shape_spec(family: str, shape) -> dict:
    """The JSON-able shape ``model_config`` and ``build_model`` take, from an ``r1sft.presets.Shape``."""
    return {"family": family, "hidden": shape.hidden, "layers": shape.layers, "heads": shape.heads,
            "kv_heads": shape.kv_heads, "head_dim": shape.head_dim, "intermediate": shape.intermediate,
            "vocab": shape.vocab, "tied": shape.tied}


def model_config(shape: dict):
    """The transformers config of the tiny family model, resized to ``shape`` (see ``shape_spec``)."""
    from transformers import AutoConfig

    cfg = json.loads((tiny_dir(shape["family"]) / "config.json").read_text())
    cfg.update(hidden_size=shape["hidden"], num_hidden_layers=shape["layers"], num_attention_heads=shape["heads"],
               num_key_value_heads=shape["kv_heads"], intermediate_size=shape["intermediate"],
               vocab_size=shape["vocab"], tie_word_embeddings=shape["tied"],
               max_position_embeddings=max(cfg.get("max_position_embeddings", 0), 40960))
    if "head_dim" in cfg or shape["head_dim"] != shape["hidden"] // shape["heads"]:
        cfg["head_dim"] = shape["head_dim"]
    for key in ("torch_dtype", "dtype", "architectures", "transformers_version", "layer_types"):
        cfg.pop(key, None)
    return AutoConfig.for_model(cfg.pop("model_type"), **cfg)


def decoder_layers(preset_name: str, layers: int):
    """``layers`` decoder layers of a preset's real shape as a bf16 base model on the GPU (random weights, seed 0,
    SDPA attention), with a 256-token vocabulary: what the GPU checks measure is the layers, not the embedding."""
    import torch
    from transformers import AutoModel

    from r1sft.presets import get_preset

    preset = get_preset(preset_name)
    config = model_config({**shape_spec(preset.family.name, preset.shape), "layers": layers, "vocab": 256})
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device("cuda"):
        return AutoModel.from_config(config, dtype=torch.bfloat16)


def build_model(shape: dict, out_dir: Path, device: str = "cpu", seed: int = 0) -> Path:
    """Write a bf16 random model of ``shape`` (see ``shape_spec``) with the tiny family tokenizer to ``out_dir``
    (skipped if present)."""
    import torch
    from transformers import AutoModelForCausalLM

    stamp = out_dir / "bench_shape.json"
    want = json.dumps(shape, sort_keys=True)
    if stamp.exists() and stamp.read_text() == want:
        return out_dir
    tiny = tiny_dir(shape["family"])
    config = model_config(shape)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (tiny / name).exists():
            shutil.copy(tiny / name, tmp / name)
    (tmp / "bench_shape.json").write_text(want)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return out_dir


# ---------------------------------------------------------------------------------------------------- data
WORDS = [
    "the", "of", "and", "to", "a", "in", "is", "that", "for", "it", "as", "with", "was", "on", "be", "by", "this",
    "are", "or", "from", "at", "an", "which", "not", "have", "but", "all", "we", "can", "if", "so", "then", "step",
    "first", "next", "finally", "answer", "solution", "problem", "question", "number", "numbers", "sum", "total",
    "add", "plus", "minus", "times", "divided", "equals", "result", "check", "let", "find", "compute", "calculate",
    "therefore", "thus", "because", "since", "each", "value", "given", "know", "need", "think", "reason",
    "carefully", "verify", "wait", "hmm", "okay", "right", "now", "digit", "digits", "carry", "write", "final",
    "boxed", "frac", "sqrt", "area", "length", "width", "triangle", "circle", "square", "root", "prime", "even",
    "odd", "multiply", "subtract", "remainder", "how", "many", "much", "what", "why", "when", "does", "should",
    "could", "must",
]
OPENERS = ["Let me", "Wait,", "Hmm,", "So", "Now", "First,", "Next,", "Therefore", "Okay,", "But"]


def _sentence(rng: random.Random) -> str:
    a, b = rng.randint(2, 999), rng.randint(2, 999)
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 18)))
    kind = rng.random()
    if kind < 0.4:
        return f"{rng.choice(OPENERS)} {words}: {a} + {b} = {a + b}."
    if kind < 0.6:
        return f"{rng.choice(OPENERS)} {words}, so $\\frac{{{a}}}{{{b}}}$ is the {rng.choice(WORDS)}."
    return f"{rng.choice(OPENERS)} {words}."


class SentencePool:
    """Sentences with their token counts: a document of N tokens is sentences drawn until N is reached.

    Each sentence starts with a space, so token counts add up exactly when sentences are concatenated (the family
    pre-tokenizers split at spaces before words).
    """

    def __init__(self, tokenizer, rng: random.Random, size: int = 4000):
        self.sentences = [" " + _sentence(rng) for _ in range(size)]
        enc = tokenizer(self.sentences, add_special_tokens=False)["input_ids"]
        self.counts = [len(ids) for ids in enc]

    def text(self, rng: random.Random, tokens: int) -> tuple[str, int]:
        parts, n = [], 0
        while n < tokens:
            i = rng.randrange(len(self.sentences))
            parts.append(self.sentences[i])
            n += self.counts[i]
        return "".join(parts).lstrip(), n


TEMPLATE_TOKENS = 20  # what the chat template adds to a conversation's content tokens, about


def make_dataset(family: str, out_dir: Path, samples: int, median: int, sigma: float, max_tokens: int,
                 min_tokens: int, seed: int = 0, longest_at: int | None = None) -> dict:
    """Write ``r1sft_bench_<family>.jsonl`` + ``dataset_info.json`` (r1sft's converted format) into ``out_dir``.

    Document length (prompt + chain of thought + answer, in the family tokenizer's tokens) is log-normal with the
    given median and sigma, clipped to [min_tokens, max_tokens]; the template adds a few dozen more.
    """
    from transformers import AutoTokenizer

    name = f"r1sft_bench_{family}"
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = dict(family=family, samples=samples, median=median, sigma=sigma, max_tokens=max_tokens,
                min_tokens=min_tokens, seed=seed, longest_at=longest_at)
    file = out_dir / f"{name}.jsonl"
    stamp = out_dir / f"{name}.meta.json"
    if not (stamp.exists() and json.loads(stamp.read_text()) == meta and file.exists()):
        tok = AutoTokenizer.from_pretrained(tiny_dir(family))
        rng = random.Random(seed)
        pool = SentencePool(tok, rng)
        lines, lengths = [], []
        for _ in range(samples):
            total = int(min(max(rng.lognormvariate(math.log(median), sigma), min_tokens), max_tokens))
            prompt_len = max(8, min(400, int(total * rng.uniform(0.02, 0.08))))
            answer_len = max(4, min(200, int(total * rng.uniform(0.01, 0.04))))
            think_len = max(4, total - prompt_len - answer_len - 8)  # 8: the think tags and newlines
            prompt, n1 = pool.text(rng, prompt_len)
            think, n2 = pool.text(rng, think_len)
            answer, n3 = pool.text(rng, answer_len)
            answer += f" The answer is $\\boxed{{{rng.randint(0, 999)}}}$."
            row = {"conversations": [{"from": "human", "value": prompt},
                                     {"from": "gpt", "value": f"<think>\n{think}\n</think>\n\n{answer}"}],
                   "system": ""}
            lines.append(json.dumps(row, ensure_ascii=False))
            lengths.append(n1 + n2 + n3)
        if longest_at is not None and 0 <= longest_at < samples:  # the worst case inside the measured window
            i = max(range(samples), key=lengths.__getitem__)
            lines[i], lines[longest_at] = lines[longest_at], lines[i]
            lengths[i], lengths[longest_at] = lengths[longest_at], lengths[i]
        tmp = file.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, file)
        stamp.write_text(json.dumps(meta))
        (out_dir / f"{name}.lengths.json").write_text(json.dumps(lengths))
    lengths = json.loads((out_dir / f"{name}.lengths.json").read_text())
    info_path = out_dir / "dataset_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    # rows and mean_tokens as r1sft convert records them (the template adds ~20 tokens): --packing sizes packs by them
    info[name] = {"file_name": file.name, "formatting": "sharegpt",
                  "columns": {"messages": "conversations", "system": "system"},
                  "r1sft": {"source": "synthetic (bench)", "think": "think", **meta, "rows": len(lengths),
                            "mean_tokens": round(sum(lengths) / len(lengths) + TEMPLATE_TOKENS, 1)}}
    tmp = info_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, info_path)
    return {"dataset": name, "dataset_dir": str(out_dir), "file": str(file), "lengths": lengths}


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["model"])
    parser.add_argument("--shape", required=True, help="JSON: family, hidden, layers, heads, kv_heads, ...")
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    build_model(json.loads(args.shape), Path(args.out), device=args.device)
    print(f"model written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
