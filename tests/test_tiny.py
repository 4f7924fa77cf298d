"""Tiny models: real architectures, the families' special tokens and chat templates, deterministic builds."""

from __future__ import annotations

import hashlib

import pytest

from r1sft.tiny import FAMILIES, build_tiny_model

EXPECTED = {
    "qwen2.5": ("Qwen2ForCausalLM", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "<|im_end|>"),
    "qwen3": ("Qwen3ForCausalLM", ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"],
              "<|im_end|>"),
    "llama3.2": ("LlamaForCausalLM", ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
                 "<|eot_id|>"),
}


def _digest(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_tiny_model_has_family_architecture_tokens_and_template(family, tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tiny_model(f"tiny-{family}")
    architecture, special, eos = EXPECTED[family]
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert type(model).__name__ == architecture
    assert model.get_input_embeddings().weight.shape[0] >= len(tokenizer)
    for token in special:  # each special token is one id, not split into characters
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1, token
    assert tokenizer.eos_token == eos
    text = tokenizer.apply_chat_template([{"role": "user", "content": "2+2?"}], tokenize=False,
                                         add_generation_prompt=True)
    assert "2+2?" in text and (eos in text)


def test_tiny_model_build_is_deterministic(tmp_path):
    first = build_tiny_model("qwen3", tmp_path / "a")
    second = build_tiny_model("qwen3", tmp_path / "b")
    assert _digest(first) == _digest(second)


def test_llama_template_is_the_published_one(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model("tiny-llama3.2"))
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date")
