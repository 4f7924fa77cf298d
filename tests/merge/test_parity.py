"""Train/inference parity after real training, on stand-ins of the real models: the 7B/8B layout with the real Qwen
vocabulary and untied embeddings, Qwen3-MoE, Llama-3.2 and a base checkpoint.

Each stand-in is LoRA-trained on data that needs new special tokens (``--think thought``: both embedding matrices
are resized and trained as extra targets), then merged twice: with plain ``llamafactory-cli export`` of its merge
recipe and with ``r1sft merge`` (logit check included). Prompt ids must match training for one and three turns, with
and without a system prompt, thinking on and off; every trained reply must end with the end-of-turn token and the
generation config must stop there. Plain export gives that exactly where the merge recipe's header says so.
"""

from __future__ import annotations

import json

import pytest
import yaml

from r1sft.merge.export import _tensor
from r1sft.merge.parity import check_parity, stop_problems
from tests.conftest import VENV_BIN, run_cli

pytestmark = pytest.mark.slow
R1SFT = str(VENV_BIN / "r1sft")
THOUGHT = ["<|begin_of_thought|>", "<|end_of_thought|>", "<|begin_of_solution|>", "<|end_of_solution|>"]
CASES = {  # preset: (LLaMA-Factory template, whether plain llamafactory-cli export matches training)
    "tiny-qwen2.5-7b": ("qwen", True),
    "tiny-qwen3-8b": ("qwen3", True),
    "tiny-qwen3-moe": ("qwen3", True),
    "tiny-llama3.2": ("llama3", False),  # its hub template's date header (and tied embeddings trained apart)
    "tiny-qwen3-base": ("qwen3", False),  # its generation config stops at <|endoftext|> only (and tied embeddings)
}


@pytest.fixture(scope="module")
def thought_data(tmp_path_factory):
    """The bundled samples in Stratos tags: training must add four special tokens."""
    folder = tmp_path_factory.mktemp("data")
    run_cli(R1SFT, "convert", "samples", "--think", "thought", "--output", str(folder / "thought.jsonl"))
    assert json.loads((folder / "dataset_info.json").read_text())["thought"]["r1sft"]["special_tokens"] == THOUGHT
    return folder


def _recipe(preset: str, method: str, data, tmp_path) -> tuple[dict, dict | None]:
    run_cli(R1SFT, "recipe", preset, "--method", method, "--dataset", "thought", "--data-dir", str(data),
            "--out-dir", str(tmp_path / "rec"), "--set", f"output_dir={tmp_path / 'out'}")
    folder = tmp_path / "rec" / preset
    train = yaml.safe_load((folder / f"{method}_sft.yaml").read_text())
    run_cli("bash", "run_sft.sh", str(folder / f"{method}_sft.yaml"), "max_steps=2")
    merge = folder / f"{method}_merge.yaml"
    return train, (yaml.safe_load(merge.read_text()) if merge.exists() else None)


def _export(merge: dict, recipe, export_dir, *command: str):
    config = dict(merge, export_dir=str(export_dir))
    recipe.write_text(yaml.safe_dump(config))
    return run_cli(*command, str(recipe))


def _matches(model, template: str, train: dict) -> list[str]:
    """The probes (and stops) that fail for ``model`` under the recipe's settings; thinking off as well."""
    thinking, mask = train.get("enable_thinking"), bool(train.get("mask_history"))
    bad = [r.probe.describe() for r in check_parity(model, template, thinking, mask) if not r.matches]
    if thinking:  # a model trained with thinking on, held to Qwen3's no-think mode too (its probes include it)
        assert any(not r.probe.thinking for r in check_parity(model, template, thinking, mask))
    return bad + stop_problems(model, template)


def _assert_resized(model_dir, tokenizer_len: int, tied: bool) -> None:
    """New tokens in both matrices; ``tied``: still one shared matrix (else two, and the config says so)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert len(tokenizer) == tokenizer_len
    for token in THOUGHT:  # each new tag is one token, inside both matrices
        (token_id,) = tokenizer(token, add_special_tokens=False)["input_ids"]
        assert token_id < model.get_input_embeddings().weight.shape[0]
    assert model.get_output_embeddings().weight.shape[0] == model.get_input_embeddings().weight.shape[0]
    assert model.config.tie_word_embeddings is tied
    same = model.get_input_embeddings().weight.data_ptr() == model.get_output_embeddings().weight.data_ptr()
    assert same is tied


@pytest.mark.parametrize("preset", sorted(CASES))
def test_lora_with_new_tokens_merges_into_a_model_that_serves_what_it_learned(preset, thought_data, tmp_path,
                                                                              tiny_model):
    from safetensors import safe_open
    from transformers import AutoConfig, AutoTokenizer

    template, plain_matches = CASES[preset]
    train, merge = _recipe(preset, "lora", thought_data, tmp_path)
    assert train["add_special_tokens"] == ",".join(THOUGHT) and merge["add_special_tokens"] == train["add_special_tokens"]
    with safe_open(str(tmp_path / "out" / "adapter_model.safetensors"), "pt") as adapter:
        keys = list(adapter.keys())
    # both resized matrices are trained as extra targets and saved with the adapter, separately when untied
    assert any("embed_tokens" in key for key in keys) and any("lm_head" in key for key in keys)
    tied = AutoConfig.from_pretrained(tiny_model(preset)).tie_word_embeddings
    base_len = len(AutoTokenizer.from_pretrained(tiny_model(preset)))

    # plain llamafactory-cli export: matches training exactly where the recipe does not send the user to r1sft merge
    header = (tmp_path / "rec" / preset / "lora_merge.yaml").read_text()
    assert ("# Run:      llamafactory-cli export" in header) is plain_matches
    _export(merge, tmp_path / "plain.yaml", tmp_path / "plain", str(VENV_BIN / "llamafactory-cli"), "export")
    assert (_matches(tmp_path / "plain", template, train) == []) is plain_matches
    if tied:  # what the header's "tied embeddings" line is about: two trained matrices under a tied config
        assert AutoConfig.from_pretrained(tmp_path / "plain").tie_word_embeddings
        assert not _tensor(tmp_path / "plain", "embed_tokens.weight").equal(_tensor(tmp_path / "plain", "lm_head.weight"))

    merged = _export(merge, tmp_path / "merge.yaml", tmp_path / "merged", R1SFT, "merge")
    assert "max |logit difference| vs base + adapter" in merged.stdout  # the merge reproduces base + adapter
    assert ("chat template differs" in merged.stdout) is (preset == "tiny-llama3.2")
    assert ("added to the EOS ids" in merged.stdout) is (preset == "tiny-qwen3-base")
    # a tied model's adapter trained its two embedding copies apart: the merged config stops claiming they are one
    assert ("tie_word_embeddings set to false" in merged.stdout) is tied
    assert _matches(tmp_path / "merged", template, train) == []
    _assert_resized(tmp_path / "merged", base_len + len(THOUGHT), tied=False)


def test_full_sft_of_the_untied_stand_in_with_new_tokens_serves_what_it_learned(thought_data, tmp_path, tiny_model):
    from transformers import AutoTokenizer

    train, merge = _recipe("tiny-qwen3-8b", "full", thought_data, tmp_path)
    assert merge is None and train["add_special_tokens"] == ",".join(THOUGHT)
    assert _matches(tmp_path / "out", "qwen3", train) == []
    _assert_resized(tmp_path / "out", len(AutoTokenizer.from_pretrained(tiny_model("tiny-qwen3-8b"))) + len(THOUGHT),
                    tied=False)
