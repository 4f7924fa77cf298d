"""Re-rendering a recipe that is already there says what changed, and for a committed one how to get it back
(issue 19, case 9: `make recipe MODEL=qwen3-8b GPUS=3` over the committed 8-GPU recipe)."""

from __future__ import annotations

from r1sft import paths
from r1sft.cli import main
from r1sft.recipe import RecipeRequest, plan_recipe, render_recipe
from r1sft.recipe.changes import changed_keys, replaced


def test_rerendering_the_committed_recipe_for_three_gpus_names_what_changes():
    committed = paths.RECIPES_DIR / "qwen3-8b" / "lora_sft.yaml"
    files = render_recipe(plan_recipe(RecipeRequest(model="qwen3-8b", gpus=3)))
    assert replaced(committed, files[committed]) == (
        "replacing the committed recipe: gpus 8 -> 3, gradient_accumulation_steps 12 -> 32 "
        "(`git checkout recipes/qwen3-8b/lora_sft.yaml` restores it)")
    same = render_recipe(plan_recipe(RecipeRequest(model="qwen3-8b", gpus=8)))
    assert replaced(committed, same[committed]) is None  # nothing changes: nothing to say


def test_r1sft_recipe_says_it_as_it_writes(tmp_path, capsys):
    assert main(["recipe", "qwen3-8b", "--out-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["recipe", "qwen3-8b", "--gpus", "3", "--set", "learning_rate=2e-5", "--out-dir", str(tmp_path)]) == 0
    wrote = [line for line in capsys.readouterr().out.splitlines() if "wrote" in line and "lora_sft" in line]
    assert wrote == [f"  wrote {tmp_path / 'qwen3-8b' / 'lora_sft.yaml'}, replacing the one there: gpus 8 -> 3, "
                     "gradient_accumulation_steps 12 -> 32, learning_rate 0.0001 -> 2e-05"]


def test_added_and_removed_keys_are_marked():
    assert changed_keys("a: 1\nb: 2\n", "a: 1\nc: 3\n") == ["-b", "+c 3"]
