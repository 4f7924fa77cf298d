"""Multi-turn rows: earlier replies are written as chat templates show them at inference (--earlier-reasoning), and
the length filter counts with the real Qwen vocabulary (--tokenizer qwen2.5 / qwen3), both through LLaMA-Factory's
own data pipeline and the real tokenizer."""

from __future__ import annotations

import json

import pytest

from r1sft.data import convert
from tests.fixtures import dataset_rows as fx

IGNORE_INDEX = -100


def _multi_turn(tmp_path, **options):
    tmp_path.mkdir(parents=True, exist_ok=True)
    rows = [fx.sharegpt_rows()[2]] + fx.sharegpt_rows()[:2]  # two exchanges with reasoning first, then single turns
    out = tmp_path / "data" / "chat.jsonl"
    stats = convert("sharegpt", fx.write_jsonl(tmp_path / "in.jsonl", rows), out, progress=False, **options)
    assert stats.rows_out == 3
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    meta = json.loads((out.parent / "dataset_info.json").read_text())["chat"]["r1sft"]
    return out, rows[0]["conversations"], meta


def test_earlier_replies_drop_their_reasoning_by_default_and_keep_it_on_request(tmp_path):
    (q1, r1, a1), (q2, r2, a2) = fx.problem(502), fx.problem(503)
    _, turns, meta = _multi_turn(tmp_path)
    assert [t["value"] for t in turns] == [q1, a1, q2, fx.think_text(r2, a2)]
    assert "earlier_reasoning" not in meta  # the default: recipe/data.py reads absent as dropped
    _, turns, meta = _multi_turn(tmp_path / "keep", earlier_reasoning="keep")
    assert [t["value"] for t in turns] == [q1, fx.think_text(r1, a1), q2, fx.think_text(r2, a2)]
    assert meta["earlier_reasoning"] == "keep"


def test_with_the_recipes_mask_history_training_sees_the_prompt_qwen3_serves(tmp_path, tiny_model):
    """Converted with the default and loaded by LLaMA-Factory as r1sft's qwen3 recipes train (mask_history), the
    trained sample's prompt is, token for token, Qwen3's published template on the earlier turns."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer
    from transformers import AutoTokenizer

    out, turns, _ = _multi_turn(tmp_path)
    model = tiny_model("tiny-qwen3-8b")  # the real vocabulary and Qwen3's published chat template
    model_args, data_args, training_args, _, _ = get_train_args(dict(
        model_name_or_path=str(model), stage="sft", do_train=True, finetuning_type="lora", dataset="chat",
        dataset_dir=str(out.parent), template="qwen3", enable_thinking=True, mask_history=True, cutoff_len=4096,
        overwrite_cache=True, output_dir=str(tmp_path / "o"), report_to="none", cache_dir=str(tmp_path / "c")))
    module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(module["tokenizer"], data_args)
    example = get_dataset(template, model_args, data_args, training_args, stage="sft", **module)["train_dataset"][0]
    first = next(i for i, label in enumerate(example["labels"]) if label != IGNORE_INDEX)
    served = AutoTokenizer.from_pretrained(model)
    messages = [{"role": "system", "content": "Answer briefly."}] + [
        {"role": "user" if t["from"] == "human" else "assistant", "content": t["value"]} for t in turns[:-1]]
    prompt = served.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert example["input_ids"][:first] == served(prompt, add_special_tokens=False)["input_ids"]
    assert served.decode(example["labels"][first:]) == turns[-1]["value"] + "<|im_end|>\n"  # the last reply only


@pytest.mark.parametrize("name", ["qwen2.5", "qwen3"])
def test_length_filter_counts_with_the_real_vocabulary(tmp_path, name):
    from transformers import AutoTokenizer

    from r1sft.qwen_vocab import resolve_tokenizer

    rows = fx.magpie_rows(6)
    rows[3]["response"] = fx.think_text("Adding the tens, then the ones. " * 60, "done")
    out = tmp_path / "data" / "m.jsonl"
    stats = convert("magpie-reasoning", fx.write_jsonl(tmp_path / "m.jsonl", rows), out, tokenizer=name,
                    max_tokens=200, progress=False)
    assert stats.rows_out == 5 and stats.dropped == {"too_long": 1}
    assert json.loads(out.with_name("dataset_info.json").read_text())["m"]["r1sft"]["tokenizer"] == name
    tokenizer = AutoTokenizer.from_pretrained(resolve_tokenizer(name))
    exact = []
    for row in (json.loads(line) for line in out.read_text().splitlines()):
        messages = [{"role": "user" if t["from"] == "human" else "assistant", "content": t["value"]}
                    for t in row["conversations"]]
        exact.append(len(tokenizer(tokenizer.apply_chat_template(messages, tokenize=False),
                                   add_special_tokens=False)["input_ids"]))
    # Qwen2.5's template adds its default system prompt: counted as part of the template's own tokens
    assert abs(max(exact) - stats.tokens["max"]) <= 6 and exact[0] > (40 if name == "qwen2.5" else 20)
