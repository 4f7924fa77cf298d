"""Recipes: LLaMA-Factory training and merge YAMLs planned from a model preset, a method and the hardware.

``plan_recipe`` decides (with a memory estimate and a reason per choice), ``render_recipe`` lays the plan out
through ``templates/*.j2``, ``check_recipe`` runs any recipe through LLaMA-Factory's own parser plus the checks it
cannot make. The ``r1sft recipe`` and ``r1sft check`` commands are thin shells over these (see ``cli.py``).
"""

from r1sft.recipe.check import check_recipe, check_recipes
from r1sft.recipe.memory import MemoryEstimate, estimate_memory
from r1sft.recipe.plan import Plan, plan_recipe
from r1sft.recipe.render import render_recipe, write_files
from r1sft.recipe.request import RecipeRequest, parse_set

__all__ = [
    "MemoryEstimate",
    "Plan",
    "RecipeRequest",
    "check_recipe",
    "check_recipes",
    "estimate_memory",
    "parse_set",
    "plan_recipe",
    "render_recipe",
    "write_files",
]
