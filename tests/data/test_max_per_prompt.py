"""``--max-per-prompt K``: of the answers to one (normalised) prompt, the K shortest are kept, the earlier on equal
length, in input order; the rest are rejects with their reason; counts, system-prompt and token stats describe the
rows written. Exact dedupe would keep one answer of OpenThoughts3's ~16: the cap is what that dataset needs."""

from __future__ import annotations

import json

import pytest

from r1sft.data import convert, mix_counts, mix_recipe_keys, registered_rows
from r1sft.errors import R1sftError
from tests.fixtures import dataset_rows as fx
from tests.fixtures import datasets_2026 as f26


def _row(prompt: str, answer_words: int, tag: str = "") -> dict:
    reasoning = " ".join(["think"] * answer_words) + tag
    return {"conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": fx.think_text(reasoning, "4")}]}


def _written(out) -> list[str]:
    return [json.loads(line)["conversations"][1]["value"] for line in out.read_text().splitlines()]


def _rejects(out) -> list[dict]:
    return [json.loads(line) for line in out.with_name(out.stem + ".rejects.jsonl").read_text().splitlines()]


def test_the_k_shortest_answers_per_prompt_in_input_order(tmp_path):
    rows = [_row("What is 2 + 2?", 9, "a"), _row("What is 3 + 3?", 2, "x"), _row("what is 2 +  2?", 3, "b"),
            _row("What is 2 + 2?", 12, "c"), _row("What is 2 + 2?", 3, "d"), _row("What is 2 + 2?", 1, "e")]
    out = tmp_path / "o.jsonl"
    stats = convert("openthoughts3", fx.write_jsonl(tmp_path / "ot3.jsonl", rows), out, max_per_prompt=2,
                    progress=False)
    # 2 + 2 answers by length: e(1) b(3) d(3, later than b) a(9) c(12): keep e and b, written where they were read
    assert [t.split("\n")[1][-1] for t in _written(out)] == ["x", "b", "e"]
    assert stats.rows_out == 3 and stats.dropped == {"max_per_prompt": 3}
    rejects = _rejects(out)
    assert sorted(r["row"] for r in rejects) == [0, 3, 4]
    assert all(r["reason"] == "max_per_prompt" for r in rejects)
    pushed = next(r for r in rejects if r["row"] == 0)  # kept at first, pushed out later by a shorter answer
    assert "pushed out by a shorter answer of the same prompt" in pushed["detail"] and "row 4" in pushed["detail"]
    assert stats.system_prompts["empty"] == 3  # counts of what was written, not of what was read
    assert stats.dedupe["max_per_prompt"] == {"prompts": 2, "kept_entries": 3,
                                              "bytes": stats.dedupe["max_per_prompt"]["bytes"]}


def test_on_equal_length_the_earlier_answer_stays(tmp_path):
    rows = [_row("What is 2 + 2?", 3, "a"), _row("What is 2 + 2?", 3, "b"), _row("What is 2 + 2?", 4, "c")]
    out = tmp_path / "o.jsonl"
    stats = convert("openthoughts3", fx.write_jsonl(tmp_path / "in.jsonl", rows), out, max_per_prompt=1,
                    progress=False)
    assert [t.split("\n")[1][-1] for t in _written(out)] == ["a"]
    assert [r["row"] for r in _rejects(out)] == [1, 2] and stats.rows_out == 1


def test_the_cap_keeps_what_exact_dedupe_destroys(tmp_path):
    rows, _ = f26.openthoughts3_rows()  # 4 prompts x 4 answers + 2 defects
    src = fx.write_parquet(tmp_path / "ot3.parquet", rows)
    capped = convert("openthoughts3", src, tmp_path / "cap.jsonl", max_per_prompt=3, progress=False)
    deduped = convert("openthoughts3", src, tmp_path / "dedupe.jsonl", dedupe="exact", progress=False)
    assert (capped.rows_out, capped.dropped["max_per_prompt"]) == (12, 4)
    assert (deduped.rows_out, deduped.dropped["duplicate"]) == (4, 12)
    # with dedupe on as well, answers of one prompt are capped, not duplicates of each other
    both = convert("openthoughts3", src, tmp_path / "both.jsonl", max_per_prompt=3, dedupe="near", progress=False)
    assert both.rows_out == 12 and "duplicate" not in both.dropped and "near_duplicate" not in both.dropped
    assert (tmp_path / "both.jsonl").read_bytes() == (tmp_path / "cap.jsonl").read_bytes()


def test_near_duplicates_of_another_prompt_are_still_dropped_with_the_cap(tmp_path):
    base = ("A farmer has a rectangular field that is 120 meters long and 80 meters wide. He wants to build a fence "
            "around the whole field and put a gate on the shorter side. How many meters of fence does he need?")
    rows = [_row(base, 5), _row(base, 4), _row(base.replace("farmer", "gardener"), 1), _row(base, 3)]
    out = tmp_path / "o.jsonl"
    stats = convert("openthoughts3", fx.write_jsonl(tmp_path / "in.jsonl", rows), out, max_per_prompt=2,
                    dedupe="near", seed=1, progress=False)
    assert stats.dropped == {"near_duplicate": 1, "max_per_prompt": 1}
    assert [r["row"] for r in _rejects(out) if r["reason"] == "near_duplicate"] == [2]


def test_token_lengths_describe_the_rows_written(tmp_path, tiny_model):
    rows = [_row("What is 2 + 2?", n) for n in (30, 10, 20)] + [_row("What is 5 + 5?", 7)]
    out = tmp_path / "t.jsonl"
    src = fx.write_jsonl(tmp_path / "in.jsonl", rows)
    stats = convert("openthoughts3", src, out, max_per_prompt=1, tokenizer="tiny-qwen3", progress=False)
    every = convert("openthoughts3", src, tmp_path / "all.jsonl", tokenizer="tiny-qwen3", progress=False)
    assert stats.rows_out == 2 and stats.tokens["rows"] == 2 and every.tokens["rows"] == 4
    assert stats.tokens["max"] < every.tokens["max"]  # the 30-word answer was pushed out: its length is not counted


@pytest.mark.parametrize(("options", "needle"), [
    ({"max_per_prompt": 0}, "--max-per-prompt 0: expected a positive number of answers"),
    ({"max_per_prompt": 2, "limit": 10}, "--max-per-prompt cannot be combined with --limit"),
])
def test_bad_cap_options_are_one_line(tmp_path, options, needle):
    src = fx.write_jsonl(tmp_path / "in.jsonl", [_row("q", 1)])
    with pytest.raises(R1sftError, match="^" + needle):
        convert("openthoughts3", src, tmp_path / "o.jsonl", progress=False, **options)


# ---- mixing at load time: what one pass of a recipe's mix trains on ------------------------------------------------

def test_mix_counts_per_strategy(tmp_path):
    sizes = {"ot3": 1000, "s1k": 100}
    assert mix_counts(sizes, {"ot3": 3, "s1k": 1}) == {"ot3": 300, "s1k": 100}  # s1k runs out first
    assert mix_counts(sizes, {"ot3": 3, "s1k": 1}, "interleave_over") == {"ot3": 1000, "s1k": 333}
    assert mix_counts(sizes, strategy="concat") == sizes
    assert mix_recipe_keys({"ot3": 3, "s1k": 1})["interleave_probs"] == "0.75,0.25"
    rows, _ = f26.s1k_rows()
    convert("s1k", fx.write_parquet(tmp_path / "s1k.parquet", rows), tmp_path / "data" / "s1k.jsonl", progress=False)
    assert registered_rows(tmp_path / "data", ["s1k"]) == {"s1k": 4}
    with pytest.raises(R1sftError, match="no r1sft row count for 'ot3'"):
        registered_rows(tmp_path / "data", ["ot3"])
