"""Dedupe, decontamination, token limits, sampling, determinism, registration, mixing and the bundled samples."""

from __future__ import annotations

import json

import orjson
import pytest

from r1sft.data import convert, convert_samples, mix_recipe_keys
from r1sft.data.system_prompts import R1_SYSTEM_PROMPT
from r1sft.errors import R1sftError
from tests.fixtures import dataset_rows as fx


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _rejects(out):
    return [json.loads(line) for line in out.with_name(out.stem + ".rejects.jsonl").read_text().splitlines()]


def _magpie(question: str, i: int = 0) -> dict:
    row = fx.magpie_row(i)
    row["instruction"] = question
    return row


def test_exact_dedupe_on_normalised_prompt(tmp_path):
    rows = [_magpie("What is 2 + 2?"), _magpie("  what IS 2 +\n 2?"), _magpie("What is 3 + 3?")]
    out = tmp_path / "d.jsonl"
    stats = convert("magpie-reasoning", fx.write_jsonl(tmp_path / "m.jsonl", rows), out, dedupe="exact",
                    progress=False)
    assert stats.rows_out == 2 and stats.dropped == {"duplicate": 1}
    assert [r["row"] for r in _rejects(out)] == [1]


def test_near_dedupe_catches_one_word_edits(tmp_path):
    base = ("A farmer has a rectangular field that is 120 meters long and 80 meters wide. He wants to build a fence "
            "around the whole field and put a gate on the shorter side. How many meters of fence does he need?")
    rows = [_magpie(base, 0), _magpie(base.replace("farmer", "gardener"), 1),
            _magpie("Name three prime numbers larger than 50 and explain why each is prime.", 2)]
    out = tmp_path / "n.jsonl"
    stats = convert("magpie-reasoning", fx.write_jsonl(tmp_path / "m.jsonl", rows), out, dedupe="near", seed=1,
                    progress=False)
    assert stats.rows_out == 2 and stats.dropped == {"near_duplicate": 1}


def test_decontaminate_by_word_8grams(tmp_path):
    benchmark = tmp_path / "math500.jsonl"
    fx.write_jsonl(benchmark, [{"problem": "Find the number of ordered pairs of positive integers whose product is "
                                           "360 and whose sum is even.", "answer": "12"}])
    short = fx.write_parquet(tmp_path / "aime.parquet", [{"question": "What is 7 + 8?", "answer": "15"}])
    rows = [
        _magpie("Please help: find the NUMBER of ordered pairs of positive   integers whose product is 360, thanks", 0),
        _magpie("What is 7 + 8?", 1),
        _magpie("Find the number of ordered pairs of apples.", 2),
    ]
    out = tmp_path / "c.jsonl"
    stats = convert("magpie-reasoning", fx.write_jsonl(tmp_path / "m.jsonl", rows), out,
                    decontaminate=[str(benchmark), str(short)], progress=False)
    assert stats.rows_out == 1 and stats.dropped == {"contaminated": 2}
    details = [r["detail"] for r in _rejects(out)]
    assert "math500.jsonl" in details[0] and "aime.parquet" in details[1]


def test_decontaminate_file_without_problem_column_is_an_error(tmp_path):
    bad = fx.write_jsonl(tmp_path / "bench.jsonl", [{"text": "x"}])
    with pytest.raises(R1sftError, match="bench.jsonl: row 0: no problem/question column"):
        convert("magpie-reasoning", fx.write_jsonl(tmp_path / "m.jsonl", fx.magpie_rows(1)), tmp_path / "o.jsonl",
                decontaminate=[str(bad)], progress=False)


def test_max_tokens_drops_long_rows_and_reports_lengths(tmp_path, tiny_model):
    from transformers import AutoTokenizer

    rows = fx.magpie_rows(6)
    rows[2]["response"] = fx.think_text("step. " * 400, "done")
    out = tmp_path / "t.jsonl"
    stats = convert("magpie-reasoning", fx.write_jsonl(tmp_path / "m.jsonl", rows), out, tokenizer="tiny-qwen3",
                    max_tokens=300, progress=False)
    assert stats.rows_out == 5 and stats.dropped == {"too_long": 1}
    tokens = stats.tokens
    assert tokens["p50"] <= tokens["p90"] <= tokens["p99"] <= tokens["max"] <= 300 and tokens["too_long"] == 1
    assert out.with_name("t.lengths.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the estimate is within a few tokens of the tokenizer's own chat template
    tokenizer = AutoTokenizer.from_pretrained(tiny_model("tiny-qwen3"))
    exact = []
    for row in _rows(out):
        messages = [{"role": "user" if t["from"] == "human" else "assistant", "content": t["value"]}
                    for t in row["conversations"]]
        exact.append(len(tokenizer(tokenizer.apply_chat_template(messages, tokenize=False),
                                   add_special_tokens=False)["input_ids"]))
    assert abs(max(exact) - tokens["max"]) <= 6
    # the mean is registered for `r1sft recipe --packing` (samples per pack)
    meta = json.loads(out.with_name("dataset_info.json").read_text())["t"]["r1sft"]
    assert meta["mean_tokens"] == tokens["mean"] and abs(meta["mean_tokens"] - sum(exact) / len(exact)) <= 6


def test_limit_first_n_and_seeded_sample(tmp_path):
    src = fx.write_jsonl(tmp_path / "m.jsonl", fx.magpie_rows(20))
    first = convert("magpie-reasoning", src, tmp_path / "first.jsonl", limit=5, progress=False)
    assert (first.rows_in, first.rows_out, first.rows_dropped) == (5, 5, 0)
    assert [r["conversations"][0]["value"] for r in _rows(tmp_path / "first.jsonl")] == \
        [fx.magpie_rows(5)[i]["instruction"] for i in range(5)]
    sample = convert("magpie-reasoning", src, tmp_path / "s1.jsonl", limit=5, seed=7, progress=False)
    assert (sample.rows_in, sample.rows_out, sample.dropped) == (20, 5, {"not_sampled": 15})
    again = convert("magpie-reasoning", src, tmp_path / "s2.jsonl", limit=5, seed=7, progress=False)
    assert again.rows_out == 5
    assert (tmp_path / "s1.jsonl").read_bytes() == (tmp_path / "s2.jsonl").read_bytes()
    other = convert("magpie-reasoning", src, tmp_path / "s3.jsonl", limit=5, seed=8, progress=False)
    assert other.rows_out == 5 and (tmp_path / "s3.jsonl").read_bytes() != (tmp_path / "s1.jsonl").read_bytes()


def test_same_input_same_options_byte_identical(tmp_path):
    rows = fx.bespoke_rows(5) + [fx.MALFORMED_STRATOS[0][0]] + fx.bespoke_rows(2)
    src = fx.write_parquet(tmp_path / "b.parquet", rows)
    out = tmp_path / "data" / "b.jsonl"
    produced = []
    for _ in range(2):
        convert("bespoke-stratos", src, out, dedupe="near", think="thought", tokenizer="tiny-qwen3", progress=False)
        produced.append({p.name: p.read_bytes() for p in out.parent.iterdir()})
    assert produced[0] == produced[1]
    assert set(produced[0]) == {"b.jsonl", "b.stats.json", "b.rejects.jsonl", "b.lengths.png", "dataset_info.json"}


def test_registration_keeps_other_entries_and_order(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    existing = {"alpha": {"file_name": "a.json"}, "mine": {"file_name": "old.jsonl"}, "omega": {"hf_hub_url": "x/y"}}
    (folder / "dataset_info.json").write_text(json.dumps(existing))
    src = fx.write_jsonl(tmp_path / "m.jsonl", fx.magpie_rows(2))
    convert("magpie-reasoning", src, folder / "magpie_v2.jsonl", name="mine", progress=False)
    info = json.loads((folder / "dataset_info.json").read_text())
    assert list(info) == ["alpha", "mine", "omega"]
    assert info["alpha"] == existing["alpha"] and info["omega"] == existing["omega"]
    assert info["mine"] == {
        "file_name": "magpie_v2.jsonl", "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system"},
        "r1sft": {"source": "magpie-reasoning", "think": "native", "split_think": False,
                  "system": "auto: known R1 prompt dropped, others kept", "special_tokens": [], "rows": 2},
    }
    convert("magpie-reasoning", src, folder / "unregistered.jsonl", register=False, progress=False)
    assert "unregistered" not in json.loads((folder / "dataset_info.json").read_text())


def test_system_policies(tmp_path):
    src = fx.write_json_array(tmp_path / "sky.json", fx.sky_t1_rows(2) + fx.bespoke_rows(1))
    for system, expected in [("auto", ""), ("keep", R1_SYSTEM_PROMPT), ("drop", ""), ("Reason, then answer.",
                                                                                       "Reason, then answer.")]:
        out = tmp_path / f"sys_{len(system)}.jsonl"
        stats = convert("sky-t1", src, out, system=system, progress=False)
        assert {r["system"] for r in _rows(out)} == {expected}
        assert stats.r1_system_prompt["rows_in"] == stats.r1_system_prompt["rows_out"] == 3
        assert (stats.r1_system_prompt["real_newlines"], stats.r1_system_prompt["literal_backslash_n"]) == (2, 1)
    out = tmp_path / "keep_style.jsonl"
    convert("sky-t1", src, out, think="keep", progress=False)
    row = _rows(out)[0]
    assert row["system"] == R1_SYSTEM_PROMPT  # kept: it matches the kept markup
    assert row["conversations"][1]["value"] == fx.sky_t1_rows(1)[0]["conversations"][1]["value"]


def test_split_think_end_to_end(tmp_path):
    out = tmp_path / "split.jsonl"
    convert("bespoke-stratos", fx.write_jsonl(tmp_path / "b.jsonl", fx.bespoke_rows(1)), out, split_think=True,
            progress=False)
    q, r, a = fx.problem(0)
    steps = r.split("\n\n")
    assert _rows(out)[0]["conversations"][1]["value"] == \
        f"<think>\n{steps[0]}\n</think>\n\n<think>\n{steps[1]}\n</think>\n\n{a}"


def test_folder_of_shards_crlf_and_multiple_inputs(tmp_path):
    shards = tmp_path / "hub_snapshot" / "data"
    shards.mkdir(parents=True)
    fx.write_parquet(shards / "train-00000-of-00002.parquet", fx.bespoke_rows(3))
    fx.write_parquet(shards / "train-00001-of-00002.parquet", fx.openthoughts_rows(2))
    (tmp_path / "hub_snapshot" / "README.md").write_text("# card")
    crlf = tmp_path / "crlf.jsonl"
    crlf.write_bytes(b"".join(orjson.dumps(r) + b"\r\n" for r in fx.bespoke_rows(2)))
    out = tmp_path / "all.jsonl"
    stats = convert("bespoke-stratos", [tmp_path / "hub_snapshot", crlf], out, progress=False)
    assert stats.rows_out == 7 and len(stats.inputs) == 3
    # mixing: converted files concatenate through the generic sharegpt source, unchanged
    magpie = tmp_path / "magpie.jsonl"
    convert("magpie-reasoning", fx.write_jsonl(tmp_path / "m.jsonl", fx.magpie_rows(3)), magpie, progress=False)
    mixed = tmp_path / "mixed.jsonl"
    stats = convert("sharegpt", [out, magpie], mixed, progress=False)
    assert stats.rows_out == 10
    assert mixed.read_bytes() == out.read_bytes() + magpie.read_bytes()


def test_mix_recipe_keys():
    assert mix_recipe_keys({"stratos": 3, "magpie": 1}) == {
        "dataset": "stratos,magpie", "mix_strategy": "interleave_under", "interleave_probs": "0.75,0.25"}
    assert mix_recipe_keys({"a": 1, "b": 1}, "concat") == {"dataset": "a,b", "mix_strategy": "concat"}
    with pytest.raises(R1sftError):
        mix_recipe_keys({"a": 0})


def test_hub_id_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(R1sftError, match="bespokelabs/Bespoke-Stratos-17k: not a local file or folder"):
        convert("bespoke-stratos", None, tmp_path / "o.jsonl", progress=False)
    assert not (tmp_path / "o.jsonl").exists()


def test_convert_samples(tmp_path):
    stats = convert_samples(tmp_path)
    assert stats.rows_in == stats.rows_out == 80
    assert stats.r1_system_prompt["literal_backslash_n"] == 40
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert info["r1sft_sample"]["file_name"] == "r1sft_sample.jsonl"
    rows = _rows(tmp_path / "r1sft_sample.jsonl")
    assert all(len(r["conversations"][0]["value"]) + len(r["conversations"][1]["value"]) < 600 for r in rows)
    assert all(r["conversations"][1]["value"].startswith("<think>\n") and "\\boxed{" in r["conversations"][1]["value"]
               for r in rows)


def test_bundled_samples_are_what_the_generator_writes(tmp_path):
    import subprocess
    import sys

    from r1sft.paths import SAMPLES_DIR

    script = SAMPLES_DIR / "make_samples.py"
    copy = tmp_path / "make_samples.py"
    copy.write_text(script.read_text())
    subprocess.run([sys.executable, str(copy)], check=True)
    for name in ("bespoke_stratos_sample.jsonl", "magpie_reasoning_sample.jsonl"):
        assert (tmp_path / name).read_bytes() == (SAMPLES_DIR / name).read_bytes()
