"""The walking skeleton end to end: convert -> recipe -> run_sft.sh -> merge -> reply, on a tiny model, CPU."""

from __future__ import annotations

import ast
import re

import pytest
import yaml

from r1sft.merge.export import merged_logit_difference
from r1sft.paths import CACHE_DIR, REPO_ROOT
from tests.conftest import VENV_BIN, run_cli

pytestmark = pytest.mark.slow
R1SFT = str(VENV_BIN / "r1sft")


def test_demo_tells_its_story_in_a_screen_and_the_merged_model_answers_in_the_trained_format():
    proc = run_cli(R1SFT, "demo", timeout=1200)
    out = proc.stdout
    for step in ("convert", "render the recipe", "train", "merge", "ask the merged model"):
        assert f"==> {step}" in out or step in out
    assert "max |logit difference| vs base + adapter" in out
    console = (out + proc.stderr).splitlines()
    assert len(console) <= 60, "\n".join(console)
    assert not [line for line in console if "Setting accelerator to CPU" in line or "deprecated" in line]
    # nor in what the steps printed (all of it kept in .cache/demo/): the CPU merge tells DeepSpeed it is on a CPU
    assert "Setting accelerator to CPU" not in (CACHE_DIR / "demo" / "5-merge.log").read_text()
    reply = ast.literal_eval(next(line for line in console if line.startswith("reply:    "))[len("reply:    "):])
    # a closed think block, then an answer: the format the model was trained on (not a reply of newlines)
    assert re.match(r"\s*<think>\n.+?\n</think>\n\n\S", reply, re.DOTALL), reply
    assert "format:   a closed think block, then an answer" in out
    for name in ("adapter:", "loss plot:", "merged model:"):
        assert name in out
    assert "(missing!)" not in out
    recipe = yaml.safe_load((REPO_ROOT / "recipes/tiny-qwen3/lora_merge.yaml").read_text())
    assert (REPO_ROOT / recipe["export_dir"] / "model.safetensors").exists()


def test_bare_run_sft_trains_the_demo_recipe():
    proc = run_cli("bash", "run_sft.sh", timeout=900)
    assert "recipes/tiny-qwen3/lora_sft.yaml" in proc.stdout
    assert "training exited with 0" in proc.stdout
    # the LoRA linears trained through r1sft.patches.fused_lora, none left to PEFT's forward
    assert re.search(r"LoRA linears: [1-9]\d* calls fused, 0 left to PEFT", proc.stdout + proc.stderr)


def test_merged_model_matches_base_plus_adapter(tmp_path):
    out = tmp_path / "out"
    run_cli(R1SFT, "convert", "samples")
    run_cli(R1SFT, "recipe", "tiny-llama3.2", "--method", "lora", "--out-dir", str(tmp_path / "rec"),
            "--set", f"output_dir={out}", "--set", "learning_rate=0.01")
    train = tmp_path / "rec" / "tiny-llama3.2" / "lora_sft.yaml"
    merge = tmp_path / "rec" / "tiny-llama3.2" / "lora_merge.yaml"
    run_cli("bash", "run_sft.sh", str(train), "max_steps=4")
    merge_config = yaml.safe_load(merge.read_text())
    assert merge_config["adapter_name_or_path"] == str(out)
    merge_config["export_dir"] = str(tmp_path / "merged")
    merge.write_text(yaml.safe_dump(merge_config))
    run_cli(R1SFT, "merge", str(merge), "--no-verify")

    base = REPO_ROOT / merge_config["model_name_or_path"]
    diff = merged_logit_difference(str(base), str(out), str(tmp_path / "merged"))
    assert diff < 1e-4
    # The adapter really changed the model: otherwise "same logits" would prove nothing.
    assert merged_logit_difference(str(base), str(out), str(base)) > 1e-3


def test_make_recipe_then_run_sft_trains_a_tiny_preset():
    """The user flow verbatim: `make recipe MODEL=...` then `bash run_sft.sh recipes/...`."""
    run_cli(R1SFT, "convert", "samples")
    run_cli("make", "--no-print-directory", "recipe", "MODEL=tiny-qwen2.5", "METHOD=dora", "learning_rate=5e-3")
    recipe = REPO_ROOT / "recipes/tiny-qwen2.5/dora_sft.yaml"
    config = yaml.safe_load(recipe.read_text())
    assert config["use_dora"] is True and config["learning_rate"] == 5e-3 and config["template"] == "qwen"
    proc = run_cli("bash", "run_sft.sh", "recipes/tiny-qwen2.5/dora_sft.yaml", "max_steps=2", "resume=false")
    assert "training exited with 0" in proc.stdout
    assert (REPO_ROOT / config["output_dir"] / "adapter_model.safetensors").is_file()
    # a quiet console: r1sft's lines and the progress line; LLaMA-Factory's ~300 lines are in the log
    console = (proc.stdout + proc.stderr).splitlines()
    assert len(console) <= 10, "\n".join(console)
    assert any(line.startswith("r1sft: step 2/2 (100%)  loss ") and "tokens/s" in line for line in console)
    log = (REPO_ROOT / config["output_dir"] / "train.node0.log").read_text()
    assert "Model config" in log and "Model config" not in proc.stdout
    assert "deprecated" not in proc.stdout + proc.stderr and "warmup_ratio is deprecated" not in log
