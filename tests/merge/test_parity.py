"""Train/inference parity after a real LoRA merge: prompts match token for token; responses end with end-of-turn."""

from __future__ import annotations

import pytest
import yaml

from r1sft.merge.parity import PROBE_SYSTEMS, check_parity, lf_template
from tests.conftest import VENV_BIN, run_cli

pytestmark = pytest.mark.slow
R1SFT = str(VENV_BIN / "r1sft")
FAMILIES = {  # preset: (LLaMA-Factory template, end-of-turn token, whether the base template must be replaced)
    "tiny-qwen2.5": ("qwen", "<|im_end|>", False),
    "tiny-qwen3": ("qwen3", "<|im_end|>", False),
    "tiny-llama3.2": ("llama3", "<|eot_id|>", True),
}


@pytest.mark.parametrize("preset", sorted(FAMILIES))
def test_exported_model_serves_the_prompts_it_was_trained_on(preset, tmp_path, tiny_model):
    from transformers import AutoTokenizer

    template_name, end_of_turn, replaced = FAMILIES[preset]
    run_cli(R1SFT, "convert", "samples")
    run_cli(R1SFT, "recipe", preset, "--method", "lora", "--out-dir", str(tmp_path / "rec"),
            "--set", f"output_dir={tmp_path / 'out'}")
    merge = tmp_path / "rec" / preset / "lora_merge.yaml"
    config = yaml.safe_load(merge.read_text())
    assert config["template"] == template_name
    config["export_dir"] = str(tmp_path / "merged")
    merge.write_text(yaml.safe_dump(config))
    run_cli("bash", "run_sft.sh", str(tmp_path / "rec" / preset / "lora_sft.yaml"), "max_steps=2")
    merged = run_cli(R1SFT, "merge", str(merge))
    assert ("chat template differs" in merged.stdout) is replaced

    # The base model itself disagrees with training exactly when r1sft had to replace the template.
    assert all(r.matches for r in check_parity(tiny_model(preset), template_name)) is not replaced
    reports = check_parity(tmp_path / "merged", template_name)
    assert [r.system for r in reports] == list(PROBE_SYSTEMS)
    for report in reports:
        assert report.training_ids == report.inference_ids, report.system

    # The trained response ends with the family's end-of-turn token (nothing masks or cuts it).
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    template = lf_template(tokenizer, template_name)
    messages = [{"role": "user", "content": "1 + 1?"},
                {"role": "assistant", "content": "<think>\n1 + 1 = 2\n</think>\n\n\\boxed{2}"}]
    _, response_ids = template.encode_oneturn(tokenizer, messages)
    text = tokenizer.decode(response_ids, skip_special_tokens=False)
    assert text.rstrip("\n").endswith(end_of_turn), text
