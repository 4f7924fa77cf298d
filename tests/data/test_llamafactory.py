"""Acceptance: every source's fixture, in its real schema and file shape, converts into rows that LLaMA-Factory's own
data pipeline (``llamafactory.data.get_dataset`` + the supervised processor, tiny Qwen3 tokenizer) keeps, all of them;
and with ``--think native`` the trained labels are exactly the think block, the answer and the end-of-turn token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1sft.data import convert
from tests.fixtures import dataset_rows as fx
from tests.fixtures.llamafactory_loader import IGNORE_INDEX, make_loader

CASES = fx.SOURCE_CASES


@pytest.fixture(scope="module")
def llamafactory(tmp_path_factory, tiny_model):
    """Load a registered dataset through LLaMA-Factory's real pipeline; imported once per module (slow import)."""
    return make_loader(tmp_path_factory.mktemp("lf-cache"), tiny_model)


def _convert_fixture(tmp_path: Path, source: str, rows: list[dict], shape: str, **options):
    src = fx.WRITERS[shape](tmp_path / f"{source}_fixture.{shape}", rows)
    out = tmp_path / "data" / f"{source.replace('-', '_')}.jsonl"
    stats = convert(source, src, out, progress=False, **options)
    return out, stats


@pytest.mark.parametrize(("source", "rows", "shape", "options"), CASES,
                         ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_llamafactory_keeps_every_converted_row(tmp_path, llamafactory, source, rows, shape, options):
    out, stats = _convert_fixture(tmp_path, source, rows, shape, **options)
    assert stats.rows_in == len(rows)
    assert stats.rows_out == len(rows), stats.to_json()
    assert stats.rows_dropped == 0
    info = json.loads((out.parent / "dataset_info.json").read_text())
    assert info[out.stem]["file_name"] == out.name

    dataset, _ = llamafactory(out.parent, out.stem)
    assert len(dataset) == stats.rows_out  # LLaMA-Factory skipped or dropped nothing
    for example in dataset:
        assert any(label != IGNORE_INDEX for label in example["labels"])


def test_native_think_labels_are_exactly_think_answer_eos(tmp_path, llamafactory):
    rows = fx.bespoke_rows(4)
    out, stats = _convert_fixture(tmp_path, "bespoke-stratos", rows, "parquet", think="native")
    assert stats.rows_out == 4
    dataset, tokenizer = llamafactory(out.parent, out.stem)
    assert len(dataset) == 4
    for i, example in enumerate(dataset):
        question, reasoning, answer = fx.problem(i)
        labels, input_ids = example["labels"], example["input_ids"]
        first_trained = next(k for k, label in enumerate(labels) if label != IGNORE_INDEX)
        assert all(label == IGNORE_INDEX for label in labels[:first_trained])
        assert all(label != IGNORE_INDEX for label in labels[first_trained:])  # one contiguous trained span
        trained = tokenizer.decode(labels[first_trained:], skip_special_tokens=False)
        # The qwen3 template's assistant slot is "{content}<|im_end|>\n": its separator newline follows the EOS.
        assert trained == f"<think>\n{reasoning}\n</think>\n\n{answer}<|im_end|>\n"
        masked = tokenizer.decode(input_ids[:first_trained], skip_special_tokens=False)
        # The known Stratos system prompt is dropped by default with native style: the prompt is the user turn only.
        assert masked == f"<|im_start|>user\n{fx.BOXED}{question}<|im_end|>\n<|im_start|>assistant\n"


def test_thought_style_trains_its_four_special_tokens(tmp_path, llamafactory):
    out, stats = _convert_fixture(tmp_path, "sky-t1", fx.sky_t1_rows(2), "json", think="thought")
    entry = json.loads((out.parent / "dataset_info.json").read_text())[out.stem]
    tokens = entry["r1sft"]["special_tokens"]
    assert tokens == ["<|begin_of_thought|>", "<|end_of_thought|>", "<|begin_of_solution|>", "<|end_of_solution|>"]
    dataset, tokenizer = llamafactory(out.parent, out.stem, preset="tiny-qwen2.5", template="qwen",
                                      add_special_tokens=",".join(tokens))
    assert len(dataset) == 2
    ids = [tokenizer.convert_tokens_to_ids(t) for t in tokens]
    for example in dataset:
        trained = [label for label in example["labels"] if label != IGNORE_INDEX]
        assert all(trained.count(token_id) == 1 for token_id in ids)  # each tag is one token, trained once
    # thought style keeps the Stratos system prompt it describes (normalised to real newlines)
    row = json.loads(out.read_text().splitlines()[0])
    assert row["system"].startswith("Your role as an assistant") and "\\n" not in row["system"]
