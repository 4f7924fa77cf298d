"""Template parity on the real-vocabulary stand-ins, before any training: LLaMA-Factory's training ids against the
published chat templates for one and three turns, with and without a system prompt, thinking on and off; and the
training-matching template ``r1sft merge`` writes where they differ."""

from __future__ import annotations

import shutil

import pytest

from r1sft.merge.parity import Probe, align_exported_chat_template, check_parity, probes


def test_the_probes_cover_turns_history_systems_and_thinking():
    described = {probe.describe() for probe in probes("qwen3", True)}
    assert "1 turn, no system prompt, enable_thinking=True" in described
    assert "3 turns, earlier reasoning kept, system prompt, enable_thinking=False" in described
    assert "3 turns, earlier reasoning dropped, no system prompt, enable_thinking=True" in described
    assert len(described) == 12
    # trained with thinking off, a Qwen3 model is only ever served with it off
    assert {p.thinking for p in probes("qwen3", False)} == {False}
    last = Probe(3, "", False, True).messages
    assert len(last) == 6 and "<think>" in last[1]["content"] and "<think>" not in last[-1]["content"]


# (stand-in, template, enable_thinking, mask_history): the settings r1sft's recipes train with
MATCHING = [("tiny-qwen2.5-7b", "qwen", None, True), ("tiny-qwen2.5-7b", "qwen", None, False),
            ("tiny-qwen3-8b", "qwen3", True, True), ("tiny-qwen3-8b", "qwen3", False, True),
            ("tiny-qwen3-moe", "qwen3", True, True)]


@pytest.mark.parametrize(("preset", "template", "thinking", "mask"), MATCHING)
def test_published_templates_serve_what_recipes_train(preset, template, thinking, mask, tiny_model):
    reports = check_parity(tiny_model(preset), template, thinking, mask)
    assert [r.probe.describe() for r in reports if not r.matches] == []
    three = next(r for r in reports if r.probe.turns == 3 and r.probe.earlier_reasoning)
    assert len(three.inference_prompt) > 40 and 151645 in three.inference_prompt  # real ids: <|im_end|> is 151645


# settings whose published template differs from training: what differs, then r1sft merge's template fixes it
MISMATCHING = [
    ("tiny-qwen3-8b", "qwen3", True, False, "3 turns, earlier reasoning kept"),  # --earlier-reasoning keep
    ("tiny-qwen3-8b", "qwen3", False, False, "3 turns, earlier reasoning kept"),
    ("tiny-qwen3-8b", "qwen3_nothink", None, True, "1 turn, no system prompt, enable_thinking=False"),
    ("tiny-llama3.2", "llama3", None, True, "1 turn, no system prompt, enable_thinking=True"),
]


@pytest.mark.slow  # rewrites and reloads a real vocabulary's tokenizer: seconds each
@pytest.mark.parametrize(("preset", "template", "thinking", "mask", "first_bad"), MISMATCHING)
def test_where_training_and_the_published_template_differ_the_export_gets_trainings(
        preset, template, thinking, mask, first_bad, tiny_model, tmp_path):
    model = tmp_path / "export"  # the tokenizer and config of an export: what parity reads and align rewrites
    shutil.copytree(tiny_model(preset), model, ignore=shutil.ignore_patterns("*.safetensors"))
    bad = [r for r in check_parity(model, template, thinking, mask) if not r.matches]
    assert bad and any(r.probe.describe().startswith(first_bad) for r in bad)
    note = align_exported_chat_template(model, template, thinking, mask)
    assert note and "now reproduces training prompts exactly" in note
    assert all(r.matches for r in check_parity(model, template, thinking, mask))
    assert align_exported_chat_template(model, template, thinking, mask) is None  # nothing left to change
