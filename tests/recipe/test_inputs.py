"""Bad input to `r1sft recipe`, `r1sft check`, run_sft.sh and `make recipe`: read as LLaMA-Factory reads it, or
refused in one line naming the file or key; and `r1sft recipe` never writes what `r1sft check` rejects."""

from __future__ import annotations

import os
import re
import shlex
import subprocess

import pytest
import yaml
from omegaconf import OmegaConf

from r1sft.cli import build_parser, main
from r1sft.errors import R1sftError
from r1sft.paths import REPO_ROOT
from r1sft.recipe import RecipeRequest, check_recipes, plan_recipe, render_recipe, write_files
from r1sft.yamlio import load_yaml, parse_scalar
from tests.conftest import run_cli


@pytest.fixture
def full_recipe(root, tmp_path):
    plan = plan_recipe(RecipeRequest(model="qwen2.5-7b", method="full", out_dir=tmp_path), data_dir=root / "data")
    write_files(render_recipe(plan))
    return plan.sft_path


def _edit(path, **changes):
    """Rewrite a recipe with keys changed, keeping its header comments (the `# r1sft:` line)."""
    text = path.read_text()
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    args = {**yaml.safe_load(text), **changes}
    path.write_text(header + yaml.safe_dump(args, sort_keys=False))
    return path


def _omegaconf(text: str):
    """How LLaMA-Factory reads `key: text` in a recipe."""
    return OmegaConf.to_container(OmegaConf.create(f"key: {text}"))["key"]


# 1. --set values and run_sft.sh overrides -----------------------------------------------------------------------

@pytest.mark.parametrize("text", ["off", "Off", "OFF", "no", "NO", "on", "yes", "Yes", "true", "False"])
def test_yes_no_on_off_are_booleans_for_bool_fields_and_text_elsewhere(text):
    from r1sft.recipe import lf

    assert _omegaconf(text) is (text.lower() in ("on", "yes", "true"))  # what OmegaConf does: a bool everywhere
    value = parse_scalar(text)
    coerced = lf.coerce_booleans({"enable_liger_kernel": value, "save_strategy": value}, lf.TRAIN)
    assert coerced["enable_liger_kernel"] is _omegaconf(text)  # LLaMA-Factory's bool fields read it as OmegaConf does
    if text.lower() not in ("true", "false"):
        assert coerced["save_strategy"] == text  # save_strategy=no stays the strategy "no"


def test_save_strategy_no_renders_the_string(tmp_path):
    assert main(["recipe", "qwen3-8b", "--set", "save_strategy=no", "--out-dir", str(tmp_path)]) == 0
    assert OmegaConf.load(tmp_path / "qwen3-8b" / "lora_sft.yaml").save_strategy == "no"


@pytest.mark.parametrize("text", ["1e-4", "2e5", "64", "0.05", "null", "2024-01-01", "cosine", "y"])
def test_other_scalars_read_as_llamafactory_reads_them(text):
    assert parse_scalar(text) == _omegaconf(text)


def test_text_that_is_no_yaml_value_stays_text():
    assert parse_scalar("a: b") == "a: b" and parse_scalar("  ") == ""


def test_set_off_renders_false(tmp_path, capsys):
    assert main(["recipe", "qwen3-8b", "--set", "enable_liger_kernel=off", "--out-dir", str(tmp_path)]) == 0
    recipe = tmp_path / "qwen3-8b" / "lora_sft.yaml"
    assert OmegaConf.load(recipe).enable_liger_kernel is False


# 2. unreadable recipe files ---------------------------------------------------------------------------------------

BAD_FILES = {
    "latin1.yaml": ("learning_rate: 1e-5\nrun_name: caf\xe9\n".encode("latin-1"), "not UTF-8 text (byte 0xe9"),
    "syntax.yaml": (b"model_name_or_path: [unclosed\n", "not valid YAML"),
    "list.yaml": (b"- learning_rate: 1e-5\n", "list"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_check_names_an_unreadable_recipe_in_one_line(name, root, tmp_path, capsys):
    data, expected = BAD_FILES[name]
    bad = tmp_path / name
    bad.write_bytes(data)
    (line,) = check_recipes([bad], root=root)
    assert line.startswith(f"{bad}: ") and expected in line
    assert main(["check", str(bad)]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and expected in captured.out


@pytest.mark.parametrize("name", BAD_FILES)
def test_load_yaml_names_an_unreadable_file(name, tmp_path):
    data, expected = BAD_FILES[name]
    bad = tmp_path / name
    bad.write_bytes(data)
    with pytest.raises(R1sftError, match=re.escape(str(bad))) as info:
        load_yaml(bad)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_run_sft_sh_refuses_a_non_utf8_recipe_in_one_line(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(BAD_FILES["latin1.yaml"][0])
    proc = run_cli("bash", str(REPO_ROOT / "run_sft.sh"), str(bad), check=False, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert f"r1sft train: error: {bad}: not UTF-8 text" in proc.stderr


# 3. numbers the parser lets through -------------------------------------------------------------------------------

@pytest.mark.parametrize(("changes", "expected"), [
    ({"per_device_train_batch_size": 0}, "per_device_train_batch_size is 0: expected a positive integer"),
    ({"per_device_train_batch_size": -1}, "per_device_train_batch_size is -1: expected a positive integer"),
    ({"gradient_accumulation_steps": 0}, "gradient_accumulation_steps is 0: expected a positive integer"),
    ({"gradient_accumulation_steps": -4}, "gradient_accumulation_steps is -4: expected a positive integer"),
    ({"learning_rate": -1e-5}, "learning_rate is -1e-05: expected a positive number"),
    ({"cutoff_len": 0}, "cutoff_len is 0: expected a positive integer"),
    ({"cutoff_len": -2048}, "cutoff_len is -2048: expected a positive integer"),
    ({"num_train_epochs": 0.0}, "num_train_epochs is 0.0 and no max_steps: nothing would be trained"),
    ({"num_train_epochs": -1.0, "max_steps": -1}, "num_train_epochs is -1.0 and no max_steps"),
])
def test_nonsense_numbers_are_problems(full_recipe, root, changes, expected):
    _edit(full_recipe, **changes)
    problems = check_recipes([full_recipe], root=root)
    assert any(p.startswith(f"{full_recipe}: {expected}") for p in problems), problems


def test_zero_epochs_with_max_steps_is_fine(full_recipe, root):
    _edit(full_recipe, num_train_epochs=0.0, max_steps=20)
    assert check_recipes([full_recipe], root=root) == []


# 4. r1sft recipe checks before it writes --------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "written", "expected"), [
    (["--method", "full", "--set", "quantization_bit=4"], "full_sft.yaml",
     "full_sft.yaml: LLaMA-Factory rejects it: Quantization is only compatible with the LoRA or OFT method"),
    (["--method", "lora", "--set", "finetuning_type=full"], "lora_sft.yaml",
     "lora_merge.yaml: " + "{out}/qwen3-8b/lora_sft.yaml is full fine-tuning: there is no adapter to merge"),
])
def test_recipe_writes_nothing_that_check_rejects(tmp_path, capsys, argv, written, expected):
    out = tmp_path / "recipes"
    stale = out / "qwen3-8b" / written
    stale.parent.mkdir(parents=True)
    stale.write_text("# the recipe from before\n")
    assert main(["recipe", "qwen3-8b", *argv, "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert expected.format(out=out) in err
    assert err.strip().splitlines()[-1] == ("r1sft recipe: error: the rendered recipe fails r1sft check "
                                            "(1 problem above); nothing written")
    assert stale.read_text() == "# the recipe from before\n"
    assert sorted(p.name for p in stale.parent.iterdir()) == [written]


# 5. make recipe -------------------------------------------------------------------------------------------------

def _make_recipe(*assignments: str):
    """The `r1sft recipe` command `make recipe ...` would run (dry run), parsed by r1sft's own parser."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    proc = subprocess.run(["make", "-n", "--no-print-directory", "recipe", *assignments], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    command = proc.stdout[proc.stdout.index(".venv/bin/r1sft recipe"):].replace("\\\n", " ").splitlines()[0]
    argv = shlex.split(command)
    return build_parser().parse_args(argv[1:])


def test_make_keeps_spaces_and_own_variables_out_of_set():
    args = _make_recipe("MODEL=qwen3-8b", "DATASET=r1sft_sample, stratos", "SET=max_steps=1 warmup_ratio=0.2",
                        "run_name=it's mine", "learning_rate=2e-5")
    assert (args.model, args.dataset) == ("qwen3-8b", "r1sft_sample, stratos")
    assert args.set == ["max_steps=1", "warmup_ratio=0.2", "learning_rate=2e-5", "run_name=it's mine"]


@pytest.mark.parametrize(("value", "packing"), [
    ("1", True), ("True", True), ("TRUE", True), ("yes", True), ("On", True),
    ("0", False), ("false", False), ("OFF", False), ("", False),
])
def test_make_packing_in_any_case(value, packing):
    assert _make_recipe("MODEL=qwen3-8b", f"PACKING={value}").packing is packing


def test_make_refuses_an_unknown_packing_value():
    proc = subprocess.run(["make", "-n", "recipe", "PACKING=maybe"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60, env={k: v for k, v in os.environ.items() if k != "MAKEFLAGS"})
    assert proc.returncode != 0 and "PACKING=maybe: expected 1, yes, true or on" in proc.stderr


# 6. documentation that matches the code ---------------------------------------------------------------------------

def test_docs_name_the_report_to_recipes_render(root, tmp_path):
    plan = plan_recipe(RecipeRequest(model="qwen3-8b", out_dir=tmp_path), data_dir=root / "data")
    report_to = plan.train["report_to"]
    docs = (REPO_ROOT / "docs" / "recipes.md").read_text()
    assert f"`report_to: {report_to}`" in docs
    assert not re.search(r"`report_to: (?!" + re.escape(report_to) + ")", docs)


def test_paths_in_pyproject_comments_exist():
    comments = [line for line in (REPO_ROOT / "pyproject.toml").read_text().splitlines() if line.lstrip().startswith("#")]
    named = re.findall(r"[\w.-]+/[\w./-]+\.(?:txt|toml|cfg|in|md|py)\b", "\n".join(comments))
    assert [path for path in named if not (REPO_ROOT / path).exists()] == []
