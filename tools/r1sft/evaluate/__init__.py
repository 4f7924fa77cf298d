"""Evaluate a model on a problem set: generate, extract the final answer, check it, report accuracy and format.

Scoring (``extract_boxed``, ``extract_answer``, ``is_equivalent``, ``score_generation``, ``is_well_formed``,
``aggregate``) is pure and model-free; ``evaluate`` adds loading data, generating and writing the report. Importing
this package is cheap: torch, transformers and math-verify load only when used.
"""

from r1sft.evaluate.equivalence import is_equivalent, normalize_answer
from r1sft.evaluate.extract import extract_answer, extract_boxed, extract_gold, think_state
from r1sft.evaluate.problems import Problem, load_problems
from r1sft.evaluate.runner import evaluate
from r1sft.evaluate.scoring import FormatCheck, aggregate, check_format, is_well_formed, score_generation

__all__ = [
    "FormatCheck",
    "Problem",
    "aggregate",
    "check_format",
    "evaluate",
    "extract_answer",
    "extract_boxed",
    "extract_gold",
    "is_equivalent",
    "is_well_formed",
    "load_problems",
    "normalize_answer",
    "score_generation",
    "think_state",
]
