"""Scoring known generations: well-formedness, per-generation records and the report's aggregate numbers."""

import pytest

from r1sft.evaluate import aggregate, check_format, is_well_formed, score_generation

GOOD = "<think>\n1 + 1 = 2\n</think>\n\nThe answer is $\\boxed{2}$."


@pytest.mark.parametrize(
    ("text", "finish_reason", "prompt", "expected"),
    [
        (GOOD, "stop", None, True),
        (GOOD, "length", None, False),  # cut off by the token limit, even if the text looks complete
        ("<think>\n1 + 1 = 2, so \\boxed{2}", "stop", None, False),  # think block never closed
        ("<think>\n1 + 1 = 2\n</think>\n\nI am not sure.", "stop", None, False),  # no answer
        ("\\boxed{2}", "stop", None, True),  # no think block opened: nothing to close
        ("1 + 1 = 2\n</think>\n\n\\boxed{2}", "stop", "<|im_start|>assistant\n<think>\n", True),  # template opened
        ("1 + 1 = 2, so \\boxed{2}", "stop", "<|im_start|>assistant\n<think>\n", False),  # ... and never closed
        ("<|begin_of_thought|>\nx\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\\boxed{2}\n<|end_of_solution|>",
         "stop", None, True),
        # finish reason unknown: inferred from a trailing end-of-turn token in the decoded text
        (GOOD + "<|im_end|>", None, None, True),
        (GOOD + "<|eot_id|>", None, None, True),
        (GOOD + "<|im_end|>\n<|endoftext|><|endoftext|>", None, None, True),
        (GOOD, None, None, False),
    ],
)
def test_is_well_formed(text, finish_reason, prompt, expected):
    assert is_well_formed(text, finish_reason=finish_reason, prompt=prompt) is expected


def test_well_formed_parts_and_require_think():
    check = check_format("<think>\nx\n</think>\n\n42", "stop")
    assert (check.think_opened, check.think_closed, check.has_answer, check.stopped) == (True, True, True, True)
    assert check.answer == "42"
    assert is_well_formed("\\boxed{2}", "stop") and not is_well_formed("\\boxed{2}", "stop", require_think=True)
    with pytest.raises(ValueError, match="finish_reason"):
        check_format("x", "eos")


# (problem index, generation, reference answer, finish reason, correct? judged by hand)
FIXTURE = [
    (0, "<think>\nhalf\n</think>\n\n\\boxed{\\frac{1}{2}}", "0.5", "stop", True),
    (0, "<think>\nhalf\n</think>\n\nThe answer is 1/2.", "0.5", "stop", True),
    (0, "<think>\nhalf\n</think>\n\n\\boxed{0.25}", "0.5", "stop", False),
    (0, "<think>\nhalf of one is \\boxed{0.5} and more", "0.5", "length", True),  # lenient: unclosed but boxed
    (1, "<think>\nsets\n</think>\n\n\\boxed{\\{3, 1, 2\\}}", "\\{1,2,3\\}", "stop", True),
    (1, "<think>\nsets\n</think>\n\n\\boxed{\\{1, 2\\}}", "\\{1,2,3\\}", "stop", False),
    (1, "<think>\nsets\n</think>\n\nno idea", "\\{1,2,3\\}", "stop", False),
    (1, "<think>\nsets, so the answer is 1, 2, 3", "\\{1,2,3\\}", "length", False),  # unclosed: no answer
    (2, "<think>\nday\n</think>\n\n\\boxed{\\text{Monday}}", "Monday", "stop", True),
    (2, "<think>\nday\n</think>\n\n\\boxed{Dynamo}", "Monday", "stop", False),
    (2, "<think>\nday\n</think>\n\nMonday", "Monday", "stop", True),
    (2, "<think>\nday\n</think>\n\nThe answer is Tuesday.", "Monday", "stop", False),
    (3, "<think>\nsum\n</think>\n\nSo x = 12", "The sum is $\\boxed{12}$.", "stop", True),  # gold: a full solution
    (3, "<think>\nsum\n</think>\n\nwe get 13", "The sum is $\\boxed{12}$.", "stop", False),
    (3, "<think>\nsum\n</think>\n\n\\boxed{12}", "The sum is $\\boxed{12}$.", "length", True),
    (3, "<think>\nsum\n</think>\n\n\\boxed{012.0}", "The sum is $\\boxed{12}$.", "stop", True),
]


def _records():
    return [
        {"index": index, **score_generation(text, gold, finish_reason=finish, num_tokens=len(text))}
        for index, text, gold, finish, _ in FIXTURE
    ]


def test_scores_match_hand_labels():
    for record, (_, text, _, _, expected) in zip(_records(), FIXTURE, strict=True):
        assert record["correct"] is expected, text


def test_report_numbers_match_an_independent_count():
    metrics = aggregate(_records())
    # independent count, straight from the hand labels: 4 samples per problem, so pass@1 = correct / all
    labels = [expected for *_, expected in FIXTURE]
    assert metrics["accuracy"] == pytest.approx(sum(labels) / len(labels))
    assert metrics["accuracy"] == pytest.approx((3 / 4 + 1 / 4 + 2 / 4 + 3 / 4) / 4)
    assert metrics["pass_at_n"] == 1.0
    assert metrics["num_problems"] == 4 and metrics["num_generations"] == 16
    # well-formed by hand: closed think + answer + "stop" -> rows 0, 1, 2, 4, 5, 8, 9, 10, 11, 12, 13, 15
    assert metrics["format_compliance"] == pytest.approx(12 / 16)
    assert metrics["truncated_rate"] == pytest.approx(3 / 16)
    assert metrics["stop_rate"] == pytest.approx(13 / 16)
    assert metrics["think_closed_rate"] == pytest.approx(14 / 16)
    assert metrics["mean_generated_tokens"] == pytest.approx(sum(len(row[1]) for row in FIXTURE) / 16)


def test_accuracy_averages_per_problem_first():
    records = [{"index": 0, "correct": True, "well_formed": True, "think_opened": False, "think_closed": False,
                "has_answer": True, "stopped": True, "truncated": False, "num_tokens": 3}]
    records += [dict(records[0], index=1, correct=c) for c in (True, False, False, False)]
    # with unequal sample counts, accuracy is the mean over problems of the per-problem pass@1 (1 and 1/4)
    assert aggregate(records)["accuracy"] == pytest.approx((1 + 1 / 4) / 2)
    assert aggregate(records)["think_closed_rate"] is None
    assert aggregate([])["accuracy"] == 0.0
