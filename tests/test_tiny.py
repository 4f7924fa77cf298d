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


def _json(folder, name):
    import json

    return json.loads((folder / name).read_text())


@pytest.mark.parametrize(("preset", "architecture", "rows"), [
    ("tiny-qwen2.5-7b", "Qwen2ForCausalLM", 152064), ("tiny-qwen3-8b", "Qwen3ForCausalLM", 151936),
    ("tiny-qwen3-moe", "Qwen3MoeForCausalLM", 151936)])
def test_real_vocabulary_stand_ins_have_the_7b_layout(preset, architecture, rows, tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tiny_model(preset)
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert type(model).__name__ == architecture and not model.config.tie_word_embeddings
    assert model.get_input_embeddings().weight.shape[0] == model.get_output_embeddings().weight.shape[0] == rows
    assert model.get_input_embeddings().weight.data_ptr() != model.get_output_embeddings().weight.data_ptr()
    # the real ids: regular tokens below 151643, then the special and added tokens in the published order
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>"]) == \
        [151643, 151644, 151645, 151657]
    assert tokenizer("Hello world", add_special_tokens=False)["input_ids"] == [9707, 1879]
    if preset != "tiny-qwen2.5-7b":
        assert tokenizer.convert_tokens_to_ids(["<think>", "</think>"]) == [151667, 151668]
    if preset == "tiny-qwen3-moe":
        assert (model.config.num_experts, model.config.num_experts_per_tok) == (8, 2)


@pytest.mark.parametrize(("preset", "eos", "sampling"), [
    ("tiny-qwen2.5", ["<|im_end|>", "<|endoftext|>"],
     {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05}),
    ("tiny-qwen3", ["<|im_end|>", "<|endoftext|>"], {"temperature": 0.6, "top_p": 0.95, "top_k": 20}),
    ("tiny-llama3.2", ["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"], {"temperature": 0.6, "top_p": 0.9})])
def test_generation_configs_carry_the_published_eos_and_sampling(preset, eos, sampling, tiny_model):
    from transformers import AutoTokenizer

    folder = tiny_model(preset)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    generation = _json(folder, "generation_config.json")
    assert generation["eos_token_id"] == tokenizer.convert_tokens_to_ids(eos) and generation["do_sample"] is True
    assert {key: generation.get(key) for key in sampling} == sampling
    config_eos = _json(folder, "config.json")["eos_token_id"]
    if preset == "tiny-llama3.2":  # Llama-3.2-Instruct's config.json lists all three, as [128001, 128008, 128009]
        assert config_eos == tokenizer.convert_tokens_to_ids(eos)
    else:
        assert config_eos == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_base_stand_in_ends_text_with_endoftext_and_decodes_greedily(tiny_model):
    from transformers import AutoTokenizer

    folder = tiny_model("tiny-qwen3-base")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    endoftext = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert tokenizer.eos_token == "<|endoftext|>"
    assert _json(folder, "generation_config.json")["eos_token_id"] == endoftext == \
        _json(folder, "config.json")["eos_token_id"]
    assert _json(folder, "generation_config.json")["do_sample"] is False


def test_a_stale_cached_tiny_model_is_rebuilt(tmp_path):
    from r1sft.tiny import ensure_tiny_model

    folder = ensure_tiny_model("tiny-qwen2.5", root=tmp_path)
    stamp = folder / "r1sft_tiny.json"
    built = _json(folder, "r1sft_tiny.json")
    stamp.write_text(stamp.read_text().replace(built["build"], "an older build"))
    (folder / "chat_template.jinja").write_text("{{ 'stale' }}")
    ensure_tiny_model("tiny-qwen2.5", root=tmp_path)
    assert _json(folder, "r1sft_tiny.json")["build"] == built["build"]
    assert (folder / "chat_template.jinja").read_text() != "{{ 'stale' }}"
