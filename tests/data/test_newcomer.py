"""A newcomer's mistakes with ``r1sft convert`` (issue 19): each stops with one line naming the fix, exit 2, before
anything is written, or does what the user meant."""

from __future__ import annotations

import json
import os
import sys

import pytest

from r1sft.data import convert
from r1sft.errors import R1sftError
from tests.conftest import run_cli
from tests.fixtures import dataset_rows as fx

R1SFT_CONVERT = [sys.executable, "-c", "import sys, r1sft.cli as c; c.SUBCOMMAND_MODULES = ('r1sft.data.cli',); "
                 "sys.exit(c.main(sys.argv[1:]))", "convert"]


def _one_line_exit_2(proc) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.stdout, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("rows", [[], [{"system": "", "conversations": [{"from": "user", "value": "hi"}]}]],
                         ids=["no_rows", "all_dropped"])
def test_a_conversion_without_rows_exits_2_and_registers_nothing(tmp_path, rows):
    src = fx.write_jsonl(tmp_path / "in.jsonl", rows)
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "dataset_info.json").write_text("{}\n")
    err = _one_line_exit_2(run_cli(*R1SFT_CONVERT, "bespoke-stratos", "-i", str(src), "-o", str(folder / "e.jsonl"),
                                   check=False))
    assert "--allow-empty" in err, err
    assert sorted(os.listdir(folder)) == ["dataset_info.json"]
    assert (folder / "dataset_info.json").read_text() == "{}\n"
    proc = run_cli(*R1SFT_CONVERT, "bespoke-stratos", "-i", str(src), "-o", str(folder / "e.jsonl"), "--allow-empty")
    assert "e" in json.loads((folder / "dataset_info.json").read_text())
    assert "empty dataset" in proc.stderr


def test_a_reply_less_conversation_is_no_reply():
    from r1sft.data.conversation import RowRejected
    from r1sft.data.sources import get_source

    with pytest.raises(RowRejected, match="no_reply"):
        get_source("sharegpt").convert({"conversations": [{"from": "human", "value": "a"}]})


def test_an_unknown_source_gets_a_did_you_mean(tmp_path):
    src = fx.write_jsonl(tmp_path / "in.jsonl", fx.bespoke_rows(1))
    err = _one_line_exit_2(run_cli(*R1SFT_CONVERT, "bespoke-stratoss", "-i", str(src), "-o",
                                   str(tmp_path / "o.jsonl"), check=False))
    assert "did you mean 'bespoke-stratos'" in err, err
    with pytest.raises(R1sftError, match="did you mean 'sky-t1'"):
        convert("sky-t2", src, tmp_path / "o.jsonl")


def _qa_rows(reasoning: str = "thinking") -> list[dict]:
    return [{"question": f"What is {i} + 1?", reasoning: f"{i} plus one is {i + 1}.", "answer": str(i + 1)}
            for i in range(3)]


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_custom_map_warns_about_an_unmapped_reasoning_column_and_can_map_it(tmp_path, kind):
    src = fx.WRITERS[kind](tmp_path / f"in.{kind}", _qa_rows())
    out = tmp_path / "out.jsonl"
    qa = "question=instruction,answer=output"
    proc = run_cli(*R1SFT_CONVERT, "custom", "-i", str(src), "-o", str(out), "--map", qa)
    warnings = [line for line in proc.stderr.splitlines() if "chain of thought" in line]
    assert len(warnings) == 1 and "thinking=reasoning" in warnings[0], proc.stderr
    assert json.loads(out.read_text().splitlines()[0])["conversations"][1]["value"] == "1"
    proc = run_cli(*R1SFT_CONVERT, "custom", "-i", str(src), "-o", str(out), "--map", qa + ",thinking=reasoning")
    assert "chain of thought" not in proc.stderr
    first = json.loads(out.read_text().splitlines()[0])
    assert first["conversations"][1]["value"] == "<think>\n0 plus one is 1.\n</think>\n\n1"
    # a column already called ``reasoning`` is read as the chain of thought, like ``system`` or ``input``
    src = fx.WRITERS[kind](tmp_path / f"in2.{kind}", _qa_rows("reasoning"))
    proc = run_cli(*R1SFT_CONVERT, "custom", "-i", str(src), "-o", str(out), "--map", qa)
    assert "chain of thought" not in proc.stderr
    assert json.loads(out.read_text().splitlines()[0]) == first


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_a_typo_in_a_map_source_names_the_source_column(tmp_path, kind):
    src = fx.WRITERS[kind](tmp_path / f"in.{kind}", _qa_rows())
    err = _one_line_exit_2(run_cli(*R1SFT_CONVERT, "custom", "-i", str(src), "-o", str(tmp_path / "qa.jsonl"),
                                   "--map", "question=instruction,answr=output", check=False))
    assert "no column 'answr'" in err and "the file has: answer, question, thinking" in err, err
    assert "missing column(s) output" not in err


def test_an_output_in_a_folder_that_does_not_exist_is_refused_before_anything_is_written(tmp_path):
    src = fx.write_jsonl(tmp_path / "in.jsonl", fx.bespoke_rows(2))
    out = tmp_path / "data" / "nodir" / "x.jsonl"
    err = _one_line_exit_2(run_cli(*R1SFT_CONVERT, "bespoke-stratos", "-i", str(src), "-o", str(out), check=False))
    assert "does not exist" in err and "data/x.jsonl" in err and "dataset_dir" in err, err
    assert not (tmp_path / "data").exists()
    # an existing folder is a dataset_dir of the user's own: registered there, with a note on how recipes find it
    out.parent.mkdir(parents=True)
    proc = run_cli(*R1SFT_CONVERT, "bespoke-stratos", "-i", str(src), "-o", str(out))
    assert "x" in json.loads((out.parent / "dataset_info.json").read_text())
    assert f"set dataset_dir: {out.parent}" in proc.stdout, proc.stdout
    # --no-register writes anywhere (nothing to find)
    run_cli(*R1SFT_CONVERT, "bespoke-stratos", "-i", str(src), "-o", str(tmp_path / "new" / "y.jsonl"), "--no-register")
    assert (tmp_path / "new" / "y.jsonl").is_file()


def test_registering_into_a_tracked_dataset_info_says_so(tmp_path):
    import subprocess

    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "dataset_info.json").write_text("{}\n")
    git = ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "dataset_info.json"], check=True)
    subprocess.run([*git, "commit", "-qm", "info"], check=True)
    src = fx.write_jsonl(tmp_path / "in.jsonl", fx.bespoke_rows(2))
    proc = run_cli(*R1SFT_CONVERT, "bespoke-stratos", "-i", str(src), "-o", str(folder / "mine.jsonl"))
    notes = [line for line in proc.stdout.splitlines() if "tracked by git" in line]
    assert len(notes) == 1 and "'mine'" in notes[0], proc.stdout
    proc = run_cli(*R1SFT_CONVERT, "bespoke-stratos", "-i", str(src), "-o", str(folder / "mine.jsonl"))
    assert "tracked by git" not in proc.stdout  # unchanged this time: nothing to say


def test_the_length_filter_loads_no_torch_and_counts_in_batches_exactly_as_auto_tokenizer(tmp_path):
    """The memory of ``--tokenizer`` was torch's (AutoTokenizer imports it: ~600 MB) and its time the per-row
    encode calls: a fast tokenizer is read with ``tokenizers`` alone and rows are encoded a chunk at a time."""
    import subprocess

    code = ("import sys; from r1sft.data.tokens import TokenCounter; t = TokenCounter('tiny-qwen3'); "
            "print(t.base, t.per_exchange, 'torch' in sys.modules, 'transformers.models' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[-2:] == ["False", "False"], out
    from r1sft.data.tokens import TokenCounter
    from r1sft.tiny import ensure_tiny_model

    fast = TokenCounter("tiny-qwen3")
    auto = TokenCounter.__new__(TokenCounter)
    auto._load_auto(str(ensure_tiny_model("tiny-qwen3")))
    assert (fast.base, fast.per_exchange) == auto._measure_overhead()
    conversations = [("", ["What is 1 + 1?", "<think>\nOne and one.\n</think>\n\n2"]),
                     ("Be brief.", ["a", "b", "c d e", "<think>\nx\n</think>\n\ny"]), ("", ["é" * 50, "ok"])]
    assert fast.count_many(conversations) == [fast.count(*c) for c in conversations]
    auto.base, auto.per_exchange = auto._measure_overhead()
    assert fast.count_many(conversations) == auto.count_many(conversations)
    # --max-tokens through the batched path: the same rows kept and dropped as counted one by one
    rows = fx.bespoke_rows(6)
    for i, row in enumerate(rows):  # reasoning of growing length
        reply = row["conversations"][1]
        reply["value"] = reply["value"].replace("<|begin_of_thought|>\n\n", "<|begin_of_thought|>\n\n" + "so " * 9 * i)
    src = fx.write_jsonl(tmp_path / "in.jsonl", rows)
    kept = convert("bespoke-stratos", src, tmp_path / "all.jsonl", tokenizer="tiny-qwen3", progress=False,
                   register=False).tokens
    assert kept["rows"] == 6 and kept["p50"] < kept["max"]
    stats = convert("bespoke-stratos", src, tmp_path / "o.jsonl", tokenizer="tiny-qwen3", progress=False,
                    max_tokens=kept["p50"], register=False)
    assert stats.rows_out == 3 and stats.dropped == {"too_long": 3} and stats.tokens["max"] == kept["p50"]
    rejects = [json.loads(line) for line in (tmp_path / "o.rejects.jsonl").read_text().splitlines()]
    assert [r["row"] for r in rejects] == [3, 4, 5] and all(r["reason"] == "too_long" for r in rejects)
