"""r1sft.patches.liger_chunking: liger's chunk formula, the budgeted choice, the wrapper, the start-up hook and the launcher.

liger-kernel needs triton and a GPU, so it is not installed on the CPU machines the tests run on: the wrapper is
exercised on a package with liger 0.8's functional signature (the GPU side: ``bench/liger_chunk_check.py``, which
compares loss and gradients with liger's default chunks on an H100, and the benchmark's planned arms).
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from r1sft.patches import liger_chunking as lc
from r1sft.patches import registry
from r1sft.paths import REPO_ROOT
from r1sft.train import launch

GIB = 2**30
SHAPES = [  # (tokens of a micro-batch, hidden, vocabulary)
    (16384, 1536, 151936),  # Qwen2.5-1.5B at the R1 cutoff
    (4096, 1536, 151936),  # one median R1 document
    (16384, 3584, 152064),  # Qwen2.5-7B
    (16384, 4096, 151936),  # Qwen3-8B
    (16384, 3072, 128256),  # Llama-3.2-3B
    (32768, 5120, 151936),  # Qwen3-14B, two 16k rows
    (300, 64, 1000),  # a tiny test model
]

STAND_IN = '''
CALLS = []


def liger_fused_linear_cross_entropy(input, weight, target, bias=None, ce_weight=None, ignore_index=-100,
                                     lse_square_scale=0.0, label_smoothing=0.0, reduction="mean", softcap=None,
                                     return_z_loss=False, accum_dtype=None, use_token_scaling=False,
                                     return_token_accuracy=False, return_predicted_tokens=False, chunk_mem_const=1):
    CALLS.append(chunk_mem_const)
    return "loss"
'''


def test_chunk_tokens_is_ligers_formula():
    # liger 0.8.5: inc = ceil(V / (c * H)); chunk = min(next_power_of_2(ceil(BT / inc)), BT)
    assert lc.chunk_tokens(16384, 1536, 151936) == 256  # inc 99 -> ceil(16384 / 99) = 166 -> 256: 64 chunks
    assert lc.chunk_tokens(16384, 3584, 152064) == 512  # inc 43 -> 382 -> 512: 32 chunks
    assert lc.chunk_tokens(16384, 1536, 151936, 14) == 2048  # inc 8 -> 2048: 8 chunks
    assert lc.chunk_tokens(300, 64, 1000, 16) == 300  # never more than the tokens


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_budget_picks_the_largest_chunks_that_fit(shape):
    tokens, hidden, vocab = shape
    const = lc.chunk_mem_const(tokens, hidden, vocab)
    chunk = lc.chunk_tokens(tokens, hidden, vocab, const)
    assert chunk >= lc.chunk_tokens(tokens, hidden, vocab)  # never smaller than liger's default
    assert chunk * vocab * lc.LOGITS_BYTES <= lc.LOGITS_BUDGET_BYTES
    assert lc.chunk_logits_bytes(tokens, hidden, vocab) == chunk * vocab * lc.LOGITS_BYTES
    one_more = lc.chunk_tokens(tokens, hidden, vocab, const + 1)
    assert chunk == tokens or one_more * vocab * lc.LOGITS_BYTES > lc.LOGITS_BUDGET_BYTES


def test_qwen_16k_micro_batch_goes_from_64_chunks_to_8():
    tokens, hidden, vocab = SHAPES[0]
    assert tokens // lc.chunk_tokens(tokens, hidden, vocab) == 64
    assert tokens // lc.chunk_tokens(tokens, hidden, vocab, lc.chunk_mem_const(tokens, hidden, vocab)) == 8
    assert lc.chunk_mem_const(tokens, hidden, vocab, budget_bytes=GIB // 1024) == 1  # too small: liger's own


@pytest.fixture
def stand_in_liger(tmp_path, monkeypatch):
    package = tmp_path / "liger_kernel" / "transformers"
    package.mkdir(parents=True)
    (tmp_path / "liger_kernel" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "functional.py").write_text(STAND_IN)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [n for n in sys.modules if n.startswith("liger_kernel")]:
        monkeypatch.delitem(sys.modules, name)
    from liger_kernel.transformers import functional

    yield tmp_path, functional
    lc.uninstall()
    for name in [n for n in sys.modules if n.startswith("liger_kernel")]:
        del sys.modules[name]  # the stand-in must not outlive its test


def test_wrapper_chooses_the_budget_unless_the_caller_did(stand_in_liger):
    _, functional = stand_in_liger
    original = functional.liger_fused_linear_cross_entropy
    assert lc.install() and lc.install()  # idempotent
    wrapped = functional.liger_fused_linear_cross_entropy
    assert wrapped is not original
    # liger's LigerForCausalLMLoss keeps only the keyword arguments in this signature
    assert list(inspect.signature(wrapped).parameters) == list(inspect.signature(original).parameters)

    hidden_states = torch.empty(2, 8192, 1536, device="meta")  # shapes only
    weight = torch.empty(151936, 1536, device="meta")
    target = torch.empty(16384, dtype=torch.long, device="meta")
    assert wrapped(hidden_states.view(-1, 1536), weight, target, reduction="sum") == "loss"
    assert functional.CALLS[-1] == lc.chunk_mem_const(16384, 1536, 151936) > 1
    wrapped(hidden_states, weight, target, chunk_mem_const=3)
    assert functional.CALLS[-1] == 3
    wrapped(hidden_states, weight, target, *([None] * 12), 5)  # every argument positional
    assert functional.CALLS[-1] == 5
    wrapped(hidden_states, torch.empty(0, 1536, device="meta"), target)  # a weight ZeRO-3 has not gathered
    assert functional.CALLS[-1] == 1  # left to liger

    lc.uninstall()
    assert functional.liger_fused_linear_cross_entropy is original


def test_without_liger_nothing_is_installed(monkeypatch):
    for name in ("liger_kernel", "liger_kernel.transformers", "liger_kernel.transformers.functional"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as where it is not installed
    assert lc.install() is False


@pytest.mark.parametrize(("setting", "installed"), [("budget", True), ("off", False)])
def test_startup_hook_installs_it_in_every_launched_process(stand_in_liger, setting, installed):
    stand_in_root, _ = stand_in_liger
    probe = textwrap.dedent("""
        import torch
        from liger_kernel.transformers import functional
        loss = functional.liger_fused_linear_cross_entropy(torch.empty(4096, 1536, device="meta"),
                                                           torch.empty(151936, 1536, device="meta"), None)
        print(functional.CALLS)
    """)
    env = {**os.environ, "R1SFT_LIGER_CHUNKING": setting,
           "PYTHONPATH": os.pathsep.join([str(registry.SITE_DIR), str(REPO_ROOT / "tools"), str(stand_in_root)])}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    chosen = lc.chunk_mem_const(4096, 1536, 151936)
    assert done.stdout.strip() == (f"[{chosen}]" if installed else "[1]")
    chunk = lc.chunk_tokens(4096, 1536, 151936, chosen)
    assert chunk == 2048  # 1 GiB holds 3,533 tokens of 152k bf16 logits
    assert (f"liger cross-entropy: 1 calls; the last, 4096 tokens, in chunks of {chunk} tokens (liger's default: 64)"
            in done.stderr) is installed


def test_launcher_turns_it_on_for_liger_recipes_on_gpus():
    base = {"PATH": os.environ.get("PATH", ""), "NPROC_PER_NODE": "1"}
    env = launch.launch_environment({"enable_liger_kernel": True}, base)
    assert env[lc.ENV_VAR] == "budget"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(registry.SITE_DIR)

    both = launch.launch_environment({"enable_liger_kernel": True, "neat_packing": True}, base)
    assert both["PYTHONPATH"].split(os.pathsep).count(str(registry.SITE_DIR)) == 1

    full = {"finetuning_type": "full"}  # LoRA recipes get r1sft.patches.fused_lora's hook, whatever liger does
    for config, environ in [({**full, "enable_liger_kernel": True, "use_cpu": True}, base),
                            ({**full, "enable_liger_kernel": False}, base),
                            ({**full, "enable_liger_kernel": True}, {**base, lc.ENV_VAR: "off"})]:
        env = launch.launch_environment(config, environ)
        assert env.get(lc.ENV_VAR, "off") == "off"
        # on a GPU the padded batches still go through r1sft.patches.packed_attention; on the CPU nothing is patched
        cpu = config.get("use_cpu", False)
        assert (str(registry.SITE_DIR) in env.get("PYTHONPATH", "")) == (not cpu)
