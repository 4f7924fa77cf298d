"""The recipes committed under recipes/ are exactly what `r1sft recipe` renders today (refresh: `make recipes`)."""

from __future__ import annotations

import difflib

import pytest

from r1sft import paths
from r1sft.presets import catalogue
from r1sft.recipe import RecipeRequest, check_recipes, plan_recipe, render_recipe
from tests.recipe.conftest import make_root

HEADLINE = [(entry["preset"], method, entry["gpus"]) for entry in catalogue()["headline"] for method in entry["methods"]]


def test_headline_covers_the_issue_list():
    names = {(preset, method) for preset, method, _ in HEADLINE}
    for preset in ("qwen2.5-7b", "qwen3-8b", "qwen3-14b", "llama3.2-3b"):
        assert {(preset, "lora"), (preset, "full")} <= names
    assert all(gpus == 8 for *_, gpus in HEADLINE)


@pytest.mark.parametrize(("preset", "method", "gpus"), HEADLINE)
def test_committed_recipe_is_fresh(preset, method, gpus):
    plan = plan_recipe(RecipeRequest(model=preset, method=method, gpus=gpus))
    for path, text in render_recipe(plan).items():
        shown = path.relative_to(paths.REPO_ROOT)
        assert path.is_file(), f"{shown} is not committed: run `make recipes` and commit it"
        committed = path.read_text(encoding="utf-8")
        if committed != text:
            diff = "".join(difflib.unified_diff(committed.splitlines(True), text.splitlines(True),
                                                f"{shown} (committed)", f"{shown} (rendered now)", n=1))
            pytest.fail(f"{shown} is stale: run `make recipes` (r1sft recipe --refresh-committed) and commit\n{diff}")


def test_committed_recipes_pass_check(tmp_path):
    files = sorted(p for p in paths.RECIPES_DIR.glob("*/*.yaml") if not p.parent.name.startswith("tiny-"))
    assert len(files) >= 12
    # Checked against a root whose data/ holds r1sft_sample: a fresh clone has not converted it yet.
    assert check_recipes(files, root=make_root(tmp_path)) == []
