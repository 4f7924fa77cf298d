"""The `r1sft` command's face: help a newcomer can read (no reStructuredText, descriptions, defaults) and no
DeepSpeed accelerator warning from commands that do not train."""

from __future__ import annotations

import logging

import pytest

from r1sft.cli import main, quiet_deepspeed
from tests.conftest import VENV_BIN, run_cli


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return capsys.readouterr().out


def test_top_help_is_plain_text_and_shows_the_path(capsys):
    text = _help(capsys)
    assert "``" not in text and "r1sft: fine-tune Qwen2.5, Qwen3 and Llama-3.2" in text
    assert "r1sft train RECIPE [key=value ...]" in text and "make demo" in text
    for command in ("train", "demo", "learn", "recipe", "check", "convert"):
        assert "``" not in _help(capsys, command)


def test_merge_says_what_it_does_and_eval_shows_its_defaults(capsys):
    assert "Merge a trained LoRA adapter into its base model" in _help(capsys, "merge")
    text = " ".join(_help(capsys, "eval").split())
    for shown in ("0 means greedy (default: 0.6)", "nucleus sampling (default: 0.95)", "(default: 4096)",
                  "split of a hub dataset (default: test)", "(default: auto)"):
        assert shown in text
    assert "(default: None)" not in text and "(default: False)" not in text


def test_only_deepspeeds_accelerator_warning_is_dropped(caplog):
    quiet_deepspeed()
    logger = logging.getLogger("DeepSpeed")
    propagate, logger.propagate = logger.propagate, True  # deepspeed turns it off; here caplog must see what passes
    try:
        with caplog.at_level(logging.WARNING, logger="DeepSpeed"):
            logger.warning("Setting accelerator to CPU. If you have GPU or other accelerator, we were unable to "
                           "detect it.")
            logger.warning("a real DeepSpeed warning")
    finally:
        logger.propagate = propagate
    # (a handler an earlier test left on the logger may record a message twice: count kinds, not records)
    assert {r.getMessage() for r in caplog.records} == {"a real DeepSpeed warning"}


def test_building_a_model_prints_no_accelerator_warning(tmp_path):
    # save_pretrained imports deepspeed (accelerate's unwrap), which announces the CPU on a machine without a GPU
    proc = run_cli(str(VENV_BIN / "r1sft"), "tiny-model", "--family", "qwen3", "--out", str(tmp_path / "m"))
    assert "Setting accelerator" not in proc.stdout + proc.stderr
