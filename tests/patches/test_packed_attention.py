"""r1sft.patches.packed_attention: boundaries recovered from LLaMA-Factory's own 4D mask, same outputs as its dense path."""

from __future__ import annotations

import re

import pytest
import torch
from llamafactory.data.collator import prepare_4d_attention_mask

from r1sft.patches import packed_attention


def _lf_mask(rows: list[list[int]], dtype=torch.float32) -> torch.Tensor:
    return prepare_4d_attention_mask(torch.tensor(rows), dtype)


def test_segments_of_neat_packing_mask():
    # two packs: documents of 3, 2, 1 tokens + 2 padding; documents of 4, 4
    mask = _lf_mask([[1, 1, 1, 2, 2, 3, 0, 0], [1, 1, 1, 1, 2, 2, 2, 2]])
    cu_seqlens, max_len = packed_attention.document_segments(mask)
    assert cu_seqlens.tolist() == [0, 3, 5, 6, 8, 12, 16]
    assert max_len == 4


def test_segments_bool_mask_and_rejects_other_masks():
    mask = _lf_mask([[1, 1, 2, 2, 2, 0]])
    assert packed_attention.document_segments(mask == 0)[0].tolist() == [0, 2, 5, 6]
    full = torch.zeros(1, 1, 6, 6)  # bidirectional: not a causal block-diagonal mask
    assert packed_attention.document_segments(full) is None
    holed = mask.clone()
    holed[0, 0, 4, 2] = torch.finfo(holed.dtype).min  # one masked key inside a document
    assert packed_attention.document_segments(holed) is None
    assert packed_attention.document_segments(torch.zeros(1, 2, 6, 6)) is None


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_same_output_as_dense_masked_sdpa(kv_heads):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(0)
    rows = [[1] * 5 + [2] * 7 + [3] * 2 + [0] * 2, [1] * 9 + [2] * 7]
    mask = _lf_mask(rows)
    batch, heads, length, dim = 2, 4, 16, 8
    query = torch.randn(batch, heads, length, dim)
    key, value = (torch.randn(batch, kv_heads, length, dim) for _ in range(2))

    class Module:
        num_key_value_groups = heads // kv_heads
        is_causal = True

    try:
        assert packed_attention.install()
        before = packed_attention.stats()["varlen_calls"]
        ours, _ = packed_attention.packed_sdpa_attention_forward(Module(), query, key, value, mask, scaling=0.3)
        assert packed_attention.stats()["varlen_calls"] == before + 1
    finally:
        packed_attention.uninstall()
    dense, _ = sdpa_attention_forward(Module(), query, key, value, mask, scaling=0.3)
    real = torch.tensor(rows).flatten() != 0  # padding rows attend to nothing: their output is unused
    ours, dense = ours.reshape(batch * length, heads, dim), dense.reshape(batch * length, heads, dim)
    torch.testing.assert_close(ours[real], dense[real], rtol=1e-5, atol=1e-5)


def _padding_mask(lengths: list[int], length: int) -> torch.Tensor:
    """transformers' sdpa mask for right-padded rows: causal, and no query attends to a padding key (padding
    queries attend to the real tokens before them)."""
    keys = torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    return (causal[None] & keys[:, None, :])[:, None]


def test_segments_of_transformers_padding_mask():
    mask = _padding_mask([5, 8], 8)  # LLaMA-Factory pads each batch to a multiple of 8
    cu_seqlens, max_len = packed_attention.document_segments(mask)
    assert cu_seqlens.tolist() == [0, 5, 8, 16]
    assert max_len == 8
    leaky = mask.clone()
    leaky[1, 0, 6, 7] = True  # a real token attending to a later one: not causal
    assert packed_attention.document_segments(leaky) is None


def test_padded_batch_trains_the_same_through_varlen(tiny_model):
    """A padded batch of a tiny Qwen3: same loss and gradients with the patch (varlen path) as with dense sdpa."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model("tiny-qwen3"), dtype=torch.float64,
                                                 attn_implementation="sdpa")
    torch.manual_seed(0)
    ids = torch.randint(5, 500, (2, 16))
    mask = torch.ones_like(ids)
    mask[0, 11:] = 0
    labels = ids.masked_fill(mask == 0, -100)

    def loss_and_grads():
        model.zero_grad()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    dense_loss, dense_grads = loss_and_grads()
    try:
        assert packed_attention.install()
        before = packed_attention.stats()["varlen_calls"]
        loss, grads = loss_and_grads()
        assert packed_attention.stats()["varlen_calls"] > before
    finally:
        packed_attention.uninstall()
    torch.testing.assert_close(loss, dense_loss, rtol=1e-10, atol=1e-10)
    for name, grad in dense_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-9, atol=1e-10, msg=name)


def _packed_recipe(tmp_path, out_name: str):
    from tests.conftest import VENV_BIN, run_cli

    out = tmp_path / out_name
    run_cli(str(VENV_BIN / "r1sft"), "recipe", "tiny-qwen3", "--method", "full", "--packing", "--global-batch", "8",
            "--out-dir", str(tmp_path / "rec"), "--set", f"output_dir={out}", "--set", "logging_steps=1")
    return tmp_path / "rec" / "tiny-qwen3" / "full_sft.yaml", out


def _logged_losses(out) -> list[float]:
    import json

    rows = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines() if line.strip()]
    return [row["loss"] for row in rows if "loss" in row]


@pytest.mark.slow
def test_run_sft_packed_recipe_trains_like_llamafactory_dense_mask(tmp_path):
    """bash run_sft.sh on a --packing recipe: the varlen path is on, every packed batch takes it, and the losses
    equal those of LLaMA-Factory's own dense block-diagonal mask (R1SFT_PACKED_ATTENTION=off) on the same packs."""
    import yaml

    from tests.conftest import run_cli

    recipe, out = _packed_recipe(tmp_path, "varlen")
    config = yaml.safe_load(recipe.read_text())
    assert config["packing"] is True and config["neat_packing"] is True
    assert config["per_device_train_batch_size"] == 1
    fast = run_cli("bash", "run_sft.sh", str(recipe), "max_steps=3")
    log = fast.stdout + fast.stderr
    assert "packed samples attend through varlen attention" in log
    assert "r1sft: packed attention:" in log and " 0 masks that were not block-diagonal" in log
    calls = re.search(r"packed attention: (\d+) varlen calls \((\d+) of packs without a mask\)", log)
    assert calls and int(calls.group(1)) == int(calls.group(2)) > 0  # no L x L mask was built for any pack

    dense_out = tmp_path / "dense"
    dense = run_cli("bash", "run_sft.sh", str(recipe), "max_steps=3", f"output_dir={dense_out}",
                    env={"R1SFT_PACKED_ATTENTION": "off"})
    assert "varlen" not in dense.stdout + dense.stderr
    ours, reference = _logged_losses(out), _logged_losses(dense_out)
    assert len(ours) == 3 and len(reference) == 3
    assert ours == pytest.approx(reference, rel=1e-4)


@pytest.fixture
def collator(tiny_model):
    """LLaMA-Factory's own 4D-mask collator for a tiny Qwen3, with the patch installed."""
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer

    assert packed_attention.install()
    from llamafactory.data.collator import SFTDataCollatorWith4DAttentionMask

    tokenizer = AutoTokenizer.from_pretrained(tiny_model("tiny-qwen3"))
    template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template="qwen3"))

    def make(packed: bool):
        return SFTDataCollatorWith4DAttentionMask(
            template=template, tokenizer=tokenizer, block_diag_attn=packed, attn_implementation="sdpa",
            compute_dtype=torch.bfloat16, neat_packing=packed, pad_to_multiple_of=8, label_pad_token_id=-100)

    yield make
    packed_attention.uninstall()


PACK = {"input_ids": [5, 6, 7, 8, 9, 10], "attention_mask": [1, 1, 2, 2, 2, 3], "labels": [-100, 6, -100, 8, 9, 10]}


def _listed(batch):
    return {key: value.tolist() if torch.is_tensor(value) else value for key, value in batch.items()}


def test_a_pack_leaves_the_collator_without_a_mask_its_padding_a_segment_of_its_own(collator):
    batch = _listed(collator(True)([PACK]))  # padded to 8 by LLaMA-Factory
    pad = batch["input_ids"][0][-1]
    assert batch == {"input_ids": [[5, 6, 7, 8, 9, 10, pad, pad]], "attention_mask": None,
                     "labels": [[-100, 6, -100, 8, 9, 10, -100, -100]], "position_ids": [[0, 1, 0, 1, 2, 0, 0, 1]]}
    cu_seqlens, longest = packed_attention.trace_segments(torch.tensor(batch["position_ids"]))
    assert cu_seqlens.tolist() == [0, 2, 5, 6, 8] and longest == 3


def test_a_pack_padded_to_the_cutoff_is_cut_to_a_multiple_of_64(collator):
    """As LLaMA-Factory's packed dataset holds a pack: padded to the cutoff, every padding token at position 0."""
    real, cutoff = 70, 200
    pack = {"input_ids": list(range(5, 5 + real)) + [0] * (cutoff - real),
            "attention_mask": [1] * 30 + [2] * 40 + [0] * (cutoff - real),
            "position_ids": list(range(30)) + list(range(40)) + [0] * (cutoff - real),
            "labels": [-100] * 10 + list(range(20)) + [-100] * 5 + list(range(35)) + [-100] * (cutoff - real)}
    batch = collator(True)([pack])
    assert batch["attention_mask"] is None and batch["input_ids"].shape == (1, 128)
    assert batch["position_ids"][0].tolist() == list(range(30)) + list(range(40)) + list(range(128 - real))
    assert batch["labels"][0, real:].eq(-100).all()
    cu_seqlens, longest = packed_attention.trace_segments(batch["position_ids"])
    assert cu_seqlens.tolist() == [0, 30, 70, 128] and longest == 58


def test_an_unpacked_row_keeps_its_mask_up_to_32k_tokens_and_loses_it_and_its_padding_past(collator):
    row = {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [-100, 6, 7]}
    assert collator(False)([row])["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0, 0, 0]]  # LLaMA-Factory's
    long = packed_attention.UNMASKED_ROW_TOKENS + 3
    batch = collator(False)([{"input_ids": [5] * long, "attention_mask": [1] * long, "labels": [6] * long}])
    assert batch["attention_mask"] is None and batch["input_ids"].shape == (1, long)
    left = collator(False)
    left.tokenizer.padding_side = "left"  # real tokens would attend to padding before them without a mask
    try:
        assert left([{"input_ids": [5] * long, "attention_mask": [1] * long, "labels": [6] * long}])[
            "attention_mask"].shape == (1, long + 5)
    finally:
        left.tokenizer.padding_side = "right"
    two = collator(False)([row, {"input_ids": [5, 6], "attention_mask": [1, 1], "labels": [-100, 6]}])
    assert two["attention_mask"].shape == (2, 8)  # padding needs a mask: transformers' own path
    packs = collator(True)([PACK, PACK])
    assert packs["attention_mask"].shape == (2, 1, 8, 8)  # several packs a row each: LLaMA-Factory's 4D mask
    kept = collator(True)
    kept.keep_2d_mask = True  # r1sft.patches.sequence_parallel cuts shards by the 2D mask
    kept.block_diag_attn = False
    assert kept([PACK])["attention_mask"].tolist()[0][:6] == [1, 1, 2, 2, 2, 3]


def test_a_pack_without_a_mask_trains_like_llamafactorys_dense_mask(tiny_model):
    """The packed row as the collator now leaves it (no mask, restarting positions) against the same row with
    LLaMA-Factory's 4D mask: same loss and gradients, with no dense mask built by transformers either."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model("tiny-qwen3"), dtype=torch.float64,
                                                 attn_implementation="sdpa")
    ids, labels = torch.tensor([PACK["input_ids"]]), torch.tensor([PACK["labels"]])
    dense = prepare_4d_attention_mask(torch.tensor([PACK["attention_mask"]]), torch.float64)

    def loss_and_grads(**inputs):
        model.zero_grad()
        loss = model(input_ids=ids, labels=labels, use_cache=False, **inputs).loss  # as in training: no cache
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.train()
    positions = torch.tensor([[0, 1, 0, 1, 2, 0]])  # LLaMA-Factory's packs restart them too (RoPE runs in fp32)
    ids, labels, dense, positions = (torch.nn.functional.pad(t, pad, value=value) for t, pad, value in (
        (ids, (0, 2), 0), (labels, (0, 2), -100), (dense, (0, 2, 0, 2), torch.finfo(torch.float64).min),
        (positions, (0, 2), 0)))  # padded to 8 as the collator leaves it; padding restarts the positions
    positions[0, -1] = 1
    dense_loss, dense_grads = loss_and_grads(attention_mask=dense, position_ids=positions)
    try:
        assert packed_attention.install()
        loss, grads = loss_and_grads(position_ids=positions)
        assert packed_attention.stats()["from_positions"] > 0 and packed_attention.stats()["fallbacks"] == 0
    finally:
        packed_attention.uninstall()
    torch.testing.assert_close(loss, dense_loss, rtol=1e-9, atol=1e-10)
    for name, grad in dense_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-8, atol=1e-10, msg=name)
