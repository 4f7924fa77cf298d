"""Answer extraction: \\boxed{} (nested, spaced, \\fbox, several, none) and the documented fallbacks."""

import pytest

from r1sft.evaluate import extract_answer, extract_boxed, extract_gold, think_state


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so \\boxed{42}.", "42"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\frac{\\sqrt{3}}{2}} done", "\\frac{\\sqrt{3}}{2}"),
        ("\\boxed {7}", "7"),
        ("\\boxed  {x^{2}}", "x^{2}"),
        ("\\fbox{B}", "B"),
        ("first \\boxed{1}, then \\boxed{2}, finally \\boxed{3}", "3"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces do not count
        ("\\boxed{\\text{Monday}}", "\\text{Monday}"),
        ("$\\boxed 5$", "5"),
        ("\\boxed{1} and then \\boxed{2", "1"),  # the last box was cut off: use the last complete one
        ("\\boxed{} then \\boxed{ }", None),  # empty boxes are no answer
        ("no box here, the answer is 4", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    ("text", "expected", "source"),
    [
        ("<think>\nmaybe \\boxed{1}\n</think>\n\nSo \\boxed{2}.", "2", "boxed"),
        # the answer region comes first: a box inside the thoughts is not the answer when the answer section has one
        ("<think>\n\\boxed{1}\n</think>\n\nThe answer is 3.", "3", "answer_phrase"),
        ("<think>\nhmm\n</think>\n\nFinal answer: $\\frac{1}{2}$", "\\frac{1}{2}", "answer_phrase"),
        ("<think>\nhmm\n</think>\n\n42", "42", "answer_text"),
        ("<think>\nhmm\n</think>\n\nx = \\frac{1}{2}", "x = \\frac{1}{2}", "answer_text"),
        ("<think>\nhmm\n</think>\n\nMonday.", "Monday", "answer_text"),
        ("<think>\nhmm\n</think>\n\nSo x = 12", "12", "last_number"),  # a sentence is not a bare answer
        ("<think>\nhmm\n</think>\n\nI am not sure.", None, None),
        ("<think>\nhmm\n</think>\n\nAfter all the work above we get 12 apples and then 13 pears in total", "13",
         "last_number"),
        ("<think>\n3 + 4 = 7, so the answer is 7", None, None),  # unclosed think, no box: no answer
        ("<think>\n3 + 4 = 7, so \\boxed{7}", "7", "boxed"),  # unclosed think, a box: taken (lenient, as anchors do)
        ("<|begin_of_thought|>\n1+1\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\n\\boxed{2}\n\n"
         "<|end_of_solution|>", "2", "boxed"),
        ("<|begin_of_thought|>\nx\n<|end_of_thought|>\n\n<|begin_of_solution|>\nThe answer is 5.\n"
         "<|end_of_solution|>", "5", "answer_phrase"),
        ("No think block. The answer is -3.5.", "-3.5", "answer_phrase"),
        ("Blah blah, there are 1,024 ways overall to arrange those items in a row of chairs", "1,024",
         "last_number"),
        ("nothing numeric here at all, just prose that goes on for a while", None, None),
    ],
)
def test_extract_answer_order(text, expected, source):
    assert extract_answer(text) == (expected, source)


def test_think_opened_by_the_prompt():
    # R1-distill templates end the prompt with "<think>\n": the generation only closes the block.
    state = think_state("reasoning...\n</think>\n\n\\boxed{4}", opened_in_prompt=True)
    assert state.opened and state.closed and state.answer_region == "\\boxed{4}"
    assert extract_answer("still thinking, the answer is 4", opened_in_prompt=True) == (None, None)


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("72", "72"),
        (72, "72"),
        (72.0, "72"),
        (0.5, "0.5"),
        ("Natalia sold 48/2 = 24 clips.\n#### 72", "72"),
        ("We find $x = 2$, so the answer is $\\boxed{\\dfrac{3}{4}}$.", "\\dfrac{3}{4}"),
    ],
)
def test_extract_gold(cell, expected):
    assert extract_gold(cell) == expected
