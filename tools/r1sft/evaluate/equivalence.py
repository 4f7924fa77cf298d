"""Is a predicted answer equal to the reference?

Order (documented in docs/eval.md):

1. Normalised strings equal (``$``, ``\\text{}``, ``\\left``, spacing, ``\\dfrac``, degrees, percent, case, a
   leading ``x =`` removed) -> equal. Cheap, and the only check for text answers.
2. Text answers (a word of three or more letters that is not a function name, e.g. ``Monday``): stop here, unequal.
   math-verify would read ``Monday`` as the product ``M*o*n*d*a*y`` and call it equal to ``Dynamo``.
3. math-verify: ``verify(parse("$gold$"), parse("$pred$"))``, which knows ``\\frac{1}{2} = 0.5 = 1/2``, set and
   interval equality, ``x = 3`` vs ``3``, units and percent.
4. When math-verify cannot parse a side or fails: plain numbers (``1,000``, ``-2.5``, ``3/4``, ``\\frac{3}{4}``)
   compared with a relative tolerance of 1e-6.
"""

from __future__ import annotations

import functools
import math
import re
import threading
import warnings
from fractions import Fraction

_WRAPPERS = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mathit|mbox|operatorname)\s*\{([^{}]*)\}")
_DROP = re.compile(r"\\left|\\right|\\[!,;: ]|\\displaystyle|\\\$|\\%|%|\^\s*\{?\\circ\}?|\\circ|°|\$|\\\(|\\\)|\\\[|\\\]")
_ASSIGN = re.compile(r"^[a-z]\s*=\s*(?=\S)")
_CHOICE = re.compile(r"^\(([a-z])\)$")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_FRAC = re.compile(r"^(-)?\\frac\{?(-?\d+)\}?\{?(-?\d+)\}?$")
_LATEX_COMMAND = re.compile(r"\\[a-zA-Z]+")
_WORD = re.compile(r"[a-z]{3,}")
_MATH_WORDS = {"sin", "cos", "tan", "cot", "sec", "csc", "log", "exp", "sqrt", "arcsin", "arccos", "arctan", "sinh",
               "cosh", "tanh", "min", "max", "gcd", "lcm", "mod", "det", "inf", "infty", "deg"}
NUMBER_REL_TOL = 1e-6


def normalize_answer(answer: object) -> str:
    """Canonical string form of an answer for plain comparison (see the module docstring)."""
    text = str(answer).strip()
    for _ in range(3):  # nested \text{\textbf{x}}
        text = _WRAPPERS.sub(r"\1", text)
    text = _DROP.sub("", text)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("~", " ")
    text = re.sub(r"\s+", " ", text).strip().rstrip(".").strip().lower()
    text = _ASSIGN.sub("", text)
    text = text.replace(" ", "")
    choice = _CHOICE.match(text)
    if choice:
        text = choice.group(1)
    if _THOUSANDS.match(text):
        text = text.replace(",", "")
    return text


def as_number(normalized: str) -> Fraction | float | None:
    """A normalised answer read as a plain number (integer, decimal, ``a/b``, ``\\frac{a}{b}``), else None."""
    frac = _FRAC.match(normalized)
    if frac:
        sign, num, den = frac.groups()
        if int(den) == 0:
            return None
        value = Fraction(int(num), int(den))
        return -value if sign else value
    try:
        if re.fullmatch(r"-?\d+/-?\d+", normalized):
            num, den = normalized.split("/")
            return Fraction(int(num), int(den)) if int(den) else None
        if re.fullmatch(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?", normalized):
            return Fraction(normalized) if "e" not in normalized else float(normalized)
    except (ValueError, ZeroDivisionError):
        return None
    return None


def is_text_answer(normalized: str) -> bool:
    """True for answers that are words (``monday``, ``yes``, ``north``) rather than mathematics."""
    stripped = _LATEX_COMMAND.sub(" ", normalized)
    return any(word not in _MATH_WORDS for word in _WORD.findall(stripped))


def _numbers_equal(a: str, b: str) -> bool | None:
    x, y = as_number(a), as_number(b)
    if x is None or y is None:
        return None
    return math.isclose(float(x), float(y), rel_tol=NUMBER_REL_TOL, abs_tol=1e-12) if x != y else True


@functools.lru_cache(maxsize=1)
def _load_math_verify():
    """math-verify's (parse, verify), or None with one warning when it cannot be imported."""
    try:
        from math_verify import parse, verify
    except ImportError as exc:  # a declared dependency, but a broken install must not stop a long run
        warnings.warn(f"math-verify is unavailable ({exc}); answers are compared as plain strings and numbers only",
                      RuntimeWarning, stacklevel=3)
        return None
    return parse, verify


def _math_verify(pred: str, gold: str) -> bool | None:
    """math-verify's verdict, or None when it cannot parse one side (or fails, or is not installed)."""
    loaded = _load_math_verify()
    if loaded is None:
        return None
    parse, verify = loaded
    # math-verify times out with signal.alarm, which only works on the main thread.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None

    def wrap(text: str) -> str:
        return "$" + text.replace("\\$", "").replace("$", "") + "$"

    try:
        gold_parsed = parse(wrap(gold), parsing_timeout=timeout)
        pred_parsed = parse(wrap(pred), parsing_timeout=timeout)
        if not gold_parsed or not pred_parsed:
            return None
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except Exception:  # noqa: BLE001 - a parser crash on odd LaTeX means "cannot tell", not a failed run
        return None


def is_equivalent(pred: object, gold: object) -> bool:
    """True when the predicted answer ``pred`` equals the reference ``gold`` (both already extracted)."""
    if pred is None or gold is None:
        return False
    pred_text, gold_text = str(pred).strip(), str(gold).strip()
    if not pred_text or not gold_text:
        return False
    pred_norm, gold_norm = normalize_answer(pred_text), normalize_answer(gold_text)
    if pred_norm == gold_norm:
        return True
    if is_text_answer(gold_norm) or is_text_answer(pred_norm):
        return False
    verdict = _math_verify(pred_text, gold_text)
    if verdict is not None:
        return verdict
    return bool(_numbers_equal(pred_norm, gold_norm))
