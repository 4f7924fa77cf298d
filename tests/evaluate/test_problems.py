"""Reading problem sets: JSONL, JSON arrays, parquet; column detection; errors that name the file, row and column."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from r1sft.errors import R1sftError
from r1sft.evaluate import load_problems

ROWS = [
    {"problem": "What is 1+1?", "answer": "2", "source": "x"},
    {"problem": "Half of one?", "answer": 0.5},
    {"problem": "GSM style", "answer": "some work\n#### 72"},
]


def _write(path, rows, kind):
    if kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif kind == "json":
        path.write_text(json.dumps(rows))
    else:  # parquet columns have one type: answers as strings
        pq.write_table(pa.Table.from_pylist([dict(r, answer=str(r["answer"])) for r in rows]), path)
    return path


@pytest.mark.parametrize("kind", ["jsonl", "json", "parquet"])
def test_formats(tmp_path, kind):
    problems = load_problems(_write(tmp_path / f"p.{kind}", ROWS, kind))
    assert [p.problem for p in problems] == [r["problem"] for r in ROWS]
    assert [p.answer for p in problems] == ["2", "0.5", "72"]
    assert [p.index for p in problems] == [0, 1, 2]


def test_column_detection_and_keys(tmp_path):
    rows = [{"question": "q1", "solution": "so \\boxed{3}", "expected_answer": "4"}]
    path = _write(tmp_path / "p.jsonl", rows, "jsonl")
    assert load_problems(path)[0].answer == "3"  # "solution" comes before "expected_answer"
    assert load_problems(path, answer_key="expected_answer")[0].answer == "4"
    rows = [{"prompt": "p", "expected_answer": 7, "input": "i"}]
    path = _write(tmp_path / "q.json", rows, "json")
    assert (load_problems(path)[0].problem, load_problems(path)[0].answer) == ("p", "7")
    assert load_problems(path, problem_key="input")[0].problem == "i"


def test_limit_and_jsonl_saved_as_json(tmp_path):
    path = tmp_path / "lines.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    assert len(load_problems(path, limit=2)) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"problem": "a", "answer": "1"}\n{"problem": "b", "answer": ""}\n', r"line 2: column 'answer' is empty"),
        ('{"problem": "a", "answer": "1"}\n\n{"problem": 3, "answer": "1"}\n',
         r"line 3: column 'problem' must be a non-empty string"),
        ('{"problem": "a", "answer": "1"}\n{"problem": "b"}\n', r"line 2: column 'answer' is missing"),
        ('{"problem": "a", "answer": "1"}\n{"problem": "b", "answer": [1]}\n',
         r"line 2: column 'answer' must be a string or a number"),
        ('{"problem": "a", "answer": "1"}\n{"problem": "b", "answer": \n', r"line 2: not valid JSON"),
        ('{"text": "a", "label": "1"}\n', r"line 1: no problem column; looked for problem, question, prompt; "
                                        r"columns are: text, label"),
        ('{"problem": "a", "label": "1"}\n', r"line 1: no answer column"),
        ('["a", "1"]\n', r"line 1: expected an object"),
        ("\n", r"no rows"),
    ],
)
def test_bad_jsonl(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(R1sftError, match=f"{path}: " + message if "rows" not in message else message):
        load_problems(path)


def test_bad_files(tmp_path):
    with pytest.raises(R1sftError, match=r"row 2: column 'problem' must be a non-empty string"):
        load_problems(_write(tmp_path / "a.json", [ROWS[0], {"problem": " ", "answer": "1"}], "json"))
    with pytest.raises(R1sftError, match=r"no column 'q' \(--problem-key\); columns are: problem, answer"):
        load_problems(_write(tmp_path / "b.parquet", ROWS[:1], "parquet"), problem_key="q")
    (tmp_path / "c.parquet").write_text("not parquet")
    with pytest.raises(R1sftError, match=r"c.parquet: not a readable parquet file"):
        load_problems(tmp_path / "c.parquet")
    (tmp_path / "d.csv").write_text("problem,answer\n")
    with pytest.raises(R1sftError, match=r"unsupported file type '.csv'"):
        load_problems(tmp_path / "d.csv")
    (tmp_path / "e.json").write_text('{"a": 1}')
    with pytest.raises(R1sftError, match=r"e.json: expected a JSON array"):
        load_problems(tmp_path / "e.json")
    with pytest.raises(R1sftError, match=r"nope.jsonl: no such file"):
        load_problems(tmp_path / "nope.jsonl")


def test_hub_id_offline_is_a_user_error():
    # conftest sets HF_DATASETS_OFFLINE=1: a hub id that is not cached fails with one line naming it
    with pytest.raises(R1sftError, match=r"r1sft-test/no-such-set: not a local file, and loading it from the hub"):
        load_problems("r1sft-test/no-such-set", split="test")
