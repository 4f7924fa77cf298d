"""Answer equivalence: math-verify first, plain normalised comparison for text and as fallback."""

from fractions import Fraction

import pytest

from r1sft.evaluate import is_equivalent, normalize_answer
from r1sft.evaluate.equivalence import as_number


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        ("0.5", "\\frac{1}{2}"),
        ("1/2", "\\frac{1}{2}"),
        ("\\dfrac12", "1/2"),
        ("\\frac{1}{2}", "0.5"),
        ("\\{2, 1\\}", "\\{1,2\\}"),  # sets are unordered
        ("2, 1", "1, 2"),
        ("x = 3", "3"),
        ("3.0", "3"),
        ("1,000", "1000"),
        ("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2"),
        ("(x+1)^2", "x^2+2x+1"),
        ("50^\\circ", "50"),
        ("10\\%", "10"),
        ("\\$5", "5"),
        ("[1, 2)", "[1,2)"),
        ("\\text{Monday}", "Monday"),  # text answers: normalised string comparison
        ("monday", "\\textbf{Monday}."),
        ("(B)", "B"),
        ("\\text{(B)}", "B"),
    ],
)
def test_equivalent(pred, gold):
    assert is_equivalent(pred, gold)


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        ("2", "3"),
        ("0.33", "1/3"),
        ("(1, 2)", "[1, 2]"),
        ("\\{1, 2\\}", "\\{1, 3\\}"),
        ("Dynamo", "Monday"),  # math-verify alone would call these equal (both parse as products of letters)
        ("yes", "no"),
        ("five", "5"),
        ("A", "B"),
        ("", "1"),
        (None, "1"),
        ("1", None),
    ],
)
def test_not_equivalent(pred, gold):
    assert not is_equivalent(pred, gold)


def test_normalize_answer():
    assert normalize_answer(" $\\text{ 12 cm}$. ") == "12cm"
    assert normalize_answer("\\left( 1, 2 \\right)") == "(1,2)"
    assert normalize_answer("\\dfrac{1}{2}") == normalize_answer("\\tfrac{1}{2}") == "\\frac{1}{2}"


def test_plain_number_fallback():
    # used when math-verify cannot parse a side: plain numbers, fractions and \\frac with digits
    assert as_number(normalize_answer("1,000")) == 1000
    assert as_number(normalize_answer("-3/4")) == as_number(normalize_answer("-\\frac{3}{4}")) == Fraction(-3, 4)
    assert as_number("0.25") == Fraction(1, 4)
    assert as_number("x+1") is None and as_number("1/0") is None
    assert is_equivalent("1,000", "1000.0") and not is_equivalent("1,000", "1001")
