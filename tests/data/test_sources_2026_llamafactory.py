"""Acceptance for the 2025-2026 sources: each fixture, in its dataset's schema and file shape and with the known
defects of the reference, converts with counts that reconcile (in = out + dropped, by reason), and LLaMA-Factory's own
loader keeps every converted row; the reasoning is rendered as every other source renders it."""

from __future__ import annotations

import json
import re

import pytest

from r1sft.data import convert
from tests.fixtures import dataset_rows as fx
from tests.fixtures import datasets_2026 as f26
from tests.fixtures.llamafactory_loader import IGNORE_INDEX, make_loader

WRITERS = {**fx.WRITERS, "jsonl.zst": f26.write_jsonl_zst}
CASES = [(source, make, shape) for source, fixtures in f26.SOURCES_2026.items() for make, shape in fixtures]
NATIVE = re.compile(r"<think>\n(?!\s)(.+?)(?<!\s)\n</think>\n\n(?!\s)", re.S)  # the one native layout


@pytest.fixture(scope="module")
def llamafactory(tmp_path_factory, tiny_model):
    return make_loader(tmp_path_factory.mktemp("lf-cache"), tiny_model)


def _convert(tmp_path, source, make, shape, **options):
    rows, expected = make()
    tmp_path.mkdir(parents=True, exist_ok=True)
    src = WRITERS[shape](tmp_path / f"{make.__name__}.{shape}", rows)
    out = tmp_path / "data" / f"{make.__name__}.jsonl"
    return rows, expected, out, convert(source, src, out, progress=False, **options)


def _replies(out):
    return [turn["value"] for line in out.read_text().splitlines()
            for turn in json.loads(line)["conversations"] if turn["from"] == "gpt"]


@pytest.mark.parametrize(("source", "make", "shape"), CASES, ids=[f"{c[0]}-{c[1].__name__}" for c in CASES])
def test_fixture_converts_reconciles_and_loads_in_llamafactory(tmp_path, llamafactory, source, make, shape):
    rows, expected, out, stats = _convert(tmp_path, source, make, shape)
    assert stats.rows_in == len(rows)
    assert dict(stats.dropped) == expected, [json.loads(x) for x in
                                             out.with_name(out.stem + ".rejects.jsonl").read_text().splitlines()]
    assert stats.rows_out == len(rows) - sum(expected.values()) == len(out.read_text().splitlines())
    rejects = out.with_name(out.stem + ".rejects.jsonl").read_text().splitlines()
    assert len(rejects) == stats.rows_dropped
    for reply in _replies(out):  # markup normalised: native blocks or plain answers, nothing else left
        body = NATIVE.sub("", reply, count=1)
        assert "<think>" not in body and "</think>" not in body and "<answer>" not in body, reply
    dataset, _ = llamafactory(out.parent, out.stem)
    assert len(dataset) == stats.rows_out  # LLaMA-Factory skipped or dropped nothing
    for example in dataset:
        assert any(label != IGNORE_INDEX for label in example["labels"])


@pytest.mark.parametrize(("make", "shape"), [(f26.am_rows, "jsonl.zst"), (f26.am_thinking_rows, "jsonl")])
def test_am_reasoning_inline_or_in_info_renders_identically(tmp_path, make, shape):
    _, _, out, _ = _convert(tmp_path, "am-r1-distilled", make, shape)
    replies = _replies(out)
    first = 960 if make is f26.am_rows else 970
    for i, reply in enumerate(replies[:3]):
        _, r, a = fx.problem(first + i)
        assert reply == f"<think>\n{r}\n</think>\n\n{a}"  # <answer> wrapper gone, same text from info or inline
    if make is f26.am_rows:
        assert replies[3:] == [fx.think_text(*fx.problem(963)[1:]), fx.think_text(*fx.problem(964)[1:])]


@pytest.mark.parametrize("think", ["thought", "none"])
def test_new_sources_render_every_think_style(tmp_path, think):
    for source, fixtures in f26.SOURCES_2026.items():
        for make, shape in fixtures:
            _, _, out, stats = _convert(tmp_path / think / make.__name__, source, make, shape, think=think)
            assert stats.rows_out > 0
            for reply in _replies(out):
                assert "<think>" not in reply and "</think>" not in reply, (source, reply)
                if think == "none":
                    assert "<|begin_of_thought|>" not in reply
