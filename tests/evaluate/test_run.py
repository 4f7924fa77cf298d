"""End to end: ``r1sft eval`` on real tiny models; the report's numbers are re-derived from the per-sample JSONL."""

import json
import shutil
from pathlib import Path

import pytest

from r1sft.cli import main
from r1sft.evaluate import evaluate, score_generation
from r1sft.tiny import ensure_tiny_model

PROBLEMS = [
    {"problem": "What is 1+1?", "answer": "2"},
    {"problem": "What is 1+2?", "answer": "3"},
    {"question": "What is half of one?", "solution": "It is \\boxed{\\frac{1}{2}}."},
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The 2 CPU cores are shared: two oversubscribed torch threads make tiny-model generation 40x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("eval-data") / "problems.jsonl"
    rows = PROBLEMS[:2] + [{"problem": PROBLEMS[2]["question"], "answer": "\\frac12"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _read(report_path: Path):
    report = json.loads(report_path.read_text())
    samples = report_path.with_name(report["samples_file"])
    return report, [json.loads(line) for line in samples.read_text().splitlines()]


def _recount(records):
    """Independent re-derivation of the headline metrics from the per-sample records."""
    problems = sorted({r["index"] for r in records})
    per_problem = [[r["correct"] for r in records if r["index"] == i] for i in problems]
    return {
        "accuracy": sum(sum(c) / len(c) for c in per_problem) / len(per_problem),
        "pass_at_n": sum(any(c) for c in per_problem) / len(per_problem),
        "format_compliance": sum(r["well_formed"] for r in records) / len(records),
        "truncated_rate": sum(r["finish_reason"] == "length" for r in records) / len(records),
        "stop_rate": sum(r["finish_reason"] == "stop" for r in records) / len(records),
        "mean_generated_tokens": sum(r["num_tokens"] for r in records) / len(records),
        "num_generations": len(records),
        "num_problems": len(problems),
    }


def test_eval_cli_random_tiny_model(data_file, tmp_path, capsys):
    model = ensure_tiny_model("tiny-qwen3")
    out = tmp_path / "report.json"
    code = main(["eval", str(model), "--data", str(data_file), "--n", "2", "--max-new-tokens", "12",
                 "--batch-size", "4", "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    report, records = _read(out)
    assert "| accuracy (pass@1, mean of 2) |" in printed and str(out) in printed
    assert report["backend"] == "hf" and report["settings"]["n"] == 2
    assert (tmp_path / "report.samples.jsonl").exists()
    assert [(r["index"], r["sample"]) for r in records] == [(i, s) for i in range(3) for s in range(2)]
    for key, value in _recount(records).items():
        assert report["metrics"][key] == pytest.approx(value), key
    assert report["accuracy"] == report["metrics"]["accuracy"]
    assert report["well_formed"] == report["metrics"]["format_compliance"]
    for record in records:  # every record re-scores to itself from its own text
        assert 1 <= record["num_tokens"] <= 12
        assert (record["finish_reason"] == "length") == record["truncated"]
        assert record["prompt"].startswith("<|im_start|>user\n") and record["prompt"].endswith("assistant\n")
        rescored = score_generation(record["generation"], record["gold"], record["finish_reason"],
                                    record["prompt"], record["num_tokens"])
        assert {k: record[k] for k in rescored} == rescored
    assert [r["gold"] for r in records[::2]] == ["2", "3", "\\frac12"]


def test_eval_greedy_is_deterministic_and_reduces_n(data_file, tmp_path):
    model = ensure_tiny_model("tiny-llama3.2")
    runs = []
    for name, batch in (("a", 1), ("b", 3)):
        report = evaluate(model, data_file, out=tmp_path / f"{name}.json", temperature=0, n=3,
                          max_new_tokens=6, batch_size=batch, limit=2, progress=False)
        runs.append(_read(Path(report["report_file"])))
    (report_a, records_a), (_, records_b) = runs
    assert report_a["settings"]["n"] == 1 and "reduced to 1" in report_a["notes"][0]
    assert [r["generation"] for r in records_a] == [r["generation"] for r in records_b]
    # Llama: the template's own BOS once, and <|eot_id|> among the stop tokens
    assert records_a[0]["prompt"].startswith("<|begin_of_text|>") and records_a[0]["prompt"].count(
        "<|begin_of_text|>") == 1
    from transformers import AutoTokenizer

    eot = AutoTokenizer.from_pretrained(model).convert_tokens_to_ids("<|eot_id|>")
    assert eot in report_a["settings"]["stop_token_ids"]


def test_eval_qwen3_thinking_switch(data_file, tmp_path):
    model = ensure_tiny_model("tiny-qwen3")
    report = evaluate(model, data_file, out=tmp_path / "r.json", enable_thinking=False, temperature=0,
                      max_new_tokens=2, limit=1, progress=False, system="Be brief.")
    _, records = _read(Path(report["report_file"]))
    assert "<think>\n\n</think>" in records[0]["prompt"] and "Be brief." in records[0]["prompt"]


def test_eval_cli_bad_data(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "a", "answer": "1"}\n{"problem": "b", "answer": null}\n')
    code = main(["eval", str(ensure_tiny_model("tiny-qwen3")), "--data", str(bad), "--out", str(tmp_path / "r.json")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{bad}: line 2: column 'answer' must be a string or a number" in err
    assert not (tmp_path / "r.json").exists()
    assert main(["eval", str(tmp_path / "no-model"), "--data", str(bad.with_name("x.jsonl"))]) == 2
    assert main(["eval", str(tmp_path / "no-model"), "--data", str(bad), "--limit", "1"]) == 2
    assert "no-model: no such model folder" in capsys.readouterr().err
    assert main(["eval", "m", "--data", str(bad), "--top-p", "0"]) == 2
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    assert main(["eval", str(adapter), "--data", str(bad), "--limit", "1"]) == 2
    assert "a LoRA adapter, not a model; merge it first" in capsys.readouterr().err


def _memorize(source: Path, dest: Path, prompts: list[str], target: str) -> Path:
    """Train a tiny model (plain torch, about a second) to answer every prompt with ``target``: known generations."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    target_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
    rows = []
    for prompt in prompts:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        rows.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    width = max(len(r) for r in rows) + len(target_ids)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, prompt_ids in enumerate(rows):
        end = len(prompt_ids) + len(target_ids)
        input_ids[i, :end] = torch.tensor(prompt_ids + target_ids)
        labels[i, len(prompt_ids):end] = torch.tensor(target_ids)
        mask[i, :end] = 1
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(300):
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if loss.item() < 0.005:
            break
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    shutil.copy(source / "generation_config.json", dest / "generation_config.json")
    return dest


@pytest.mark.slow
def test_eval_known_generations(data_file, tmp_path):
    """A model that always answers 2: accuracy must be exactly the share of problems whose answer is 2."""
    target = "<think>\nadd them\n</think>\n\nThe answer is \\boxed{2}.<|im_end|>"
    prompts = [json.loads(line).get("problem") for line in data_file.read_text().splitlines()]
    model = _memorize(ensure_tiny_model("tiny-qwen3"), tmp_path / "memorized", prompts, target)

    report = evaluate(model, data_file, out=tmp_path / "r.json", n=2, max_new_tokens=40, progress=False)
    _, records = _read(Path(report["report_file"]))
    assert {r["generation"] for r in records} == {target.removesuffix("<|im_end|>")}
    golds = [p.get("answer") for p in PROBLEMS[:2]] + ["\\frac12"]
    expected = sum(gold == "2" for gold in golds) / len(golds)  # independent count: 1 of 3
    metrics = report["metrics"]
    assert metrics["accuracy"] == pytest.approx(expected) == pytest.approx(1 / 3)
    assert metrics["format_compliance"] == metrics["stop_rate"] == metrics["think_closed_rate"] == 1.0
    assert metrics["truncated_rate"] == 0.0
    from transformers import AutoTokenizer

    target_tokens = len(AutoTokenizer.from_pretrained(model)(target, add_special_tokens=False)["input_ids"])
    assert metrics["mean_generated_tokens"] == target_tokens  # the stop token counts

    # the same model cut off by the token limit: nothing closed, nothing answered, nothing well-formed
    report = evaluate(model, data_file, out=tmp_path / "short.json", temperature=0, max_new_tokens=5,
                      progress=False)
    metrics = report["metrics"]
    assert metrics["truncated_rate"] == 1.0 and metrics["format_compliance"] == 0.0
    assert metrics["accuracy"] == 0.0 and metrics["mean_generated_tokens"] == 5
    assert metrics["think_closed_rate"] == 0.0
