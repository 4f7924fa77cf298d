"""r1sft.patches.sequence_parallel, one process: the batches handed to DeepSpeed's adapter, the document boundaries
found from positions, the whole-trace attention against LLaMA-Factory's dense packed mask, and what is refused.
(Two processes training the same numbers: tests/train/test_sequence_parallel.py.)"""

from __future__ import annotations

import pytest
import torch
from llamafactory.data.collator import prepare_4d_attention_mask

from r1sft.patches import sequence_parallel as sp


def test_positions_restart_per_packed_document_and_stay_the_models_own_otherwise():
    mask = torch.tensor([[1, 1, 2, 2, 2, 0, 0], [1, 1, 1, 1, 1, 0, 0]])
    assert sp.row_positions(mask).tolist() == [[0, 1, 0, 1, 2, 0, 1], [0, 1, 2, 3, 4, 5, 6]]


def test_segments_come_from_restarting_positions():
    cu_seqlens, longest = sp.trace_segments(torch.tensor([[0, 1, 0, 1, 2, 0, 1], [0, 1, 2, 3, 4, 5, 6]]))
    assert cu_seqlens.tolist() == [0, 2, 5, 7, 14] and longest == 7
    assert sp.trace_segments(torch.arange(6).expand(2, 6)) is None  # one run per row: plain causal attention


def test_batches_are_padded_to_whole_shards_and_rows_that_train_nothing():
    batch = {"input_ids": torch.tensor([[5, 6, 7, 8, 9]]), "attention_mask": torch.tensor([[1, 1, 2, 2, 2]]),
             "labels": torch.tensor([[-100, 6, -100, 8, 9]])}
    out = sp.prepare_batch(batch, n=4, rows=2, pad_id=0, length=6)
    assert out["input_ids"].tolist() == [[5, 6, 7, 8, 9, 0, 0, 0], [0] * 8]
    assert out["labels"].tolist() == [[-100, 6, -100, 8, 9, -100, -100, -100], [-100] * 8]
    assert out["position_ids"][0].tolist() == [0, 1, 0, 1, 2, 3, 4, 5]  # the padding continues the last run
    assert out["attention_mask"][0].tolist() == [1, 1, 2, 2, 2, 0, 0, 0]


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_whole_trace_attention_is_llamafactorys_packed_attention(kv_heads):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(0)
    rows = [[1] * 5 + [2] * 7 + [3] * 2 + [0] * 2, [1] * 16]
    mask = torch.tensor(rows)
    heads, length, dim = 4, 16, 8
    query = torch.randn(2, heads, length, dim)
    key, value = (torch.randn(2, kv_heads, length, dim) for _ in range(2))

    class Module:
        num_key_value_groups = heads // kv_heads
        is_causal = True
        training = True

    sp._state["segments"] = sp.trace_segments(sp.row_positions(mask))
    try:
        ours, _ = sp._whole_trace_attention(Module(), query, key, value, None, scaling=0.3)
    finally:
        sp._state["segments"] = None
    dense, _ = sdpa_attention_forward(Module(), query, key, value, prepare_4d_attention_mask(mask, torch.float32),
                                      scaling=0.3)
    real = mask.flatten() != 0  # LLaMA-Factory's padding attends to nothing: its output is never used
    ours, dense = ours.reshape(2 * length, heads, dim), dense.reshape(2 * length, heads, dim)
    torch.testing.assert_close(ours[real], dense[real], rtol=1e-5, atol=1e-5)


def test_heads_follow_deepspeeds_rule():
    assert sp.head_problem(28, 4, 4) is None
    assert sp.head_problem(12, 2, 4) is None  # 4 ranks share 2 key/value heads: each gets a copy of one
    assert "28 attention heads" in sp.head_problem(28, 4, 8)
    assert "3 key/value heads" in sp.head_problem(12, 3, 2)


def test_configs_it_cannot_serve_are_named():
    problems = sp.config_problems({"quantization_bit": 4, "do_eval": True, "flash_attn": "fa2",
                                   "gradient_accumulation_steps": 3, "use_asft_loss": True}, 2)
    assert [p.split(" ")[0] for p in problems] == ["QLoRA", "flash_attn:", "evaluation", "use_asft_loss:",
                                                    "gradient_accumulation_steps"]
    assert sp.config_problems({"gradient_accumulation_steps": 4, "packing": True, "neat_packing": True}, 2) == []


def test_install_wraps_the_trainer_and_uninstall_gives_it_back(monkeypatch):
    import transformers.trainer as hf_trainer

    before = (hf_trainer.Trainer.get_train_dataloader, hf_trainer.Trainer.get_sp_size, hf_trainer.skip_first_batches)
    monkeypatch.setenv(sp.ENV_VAR, "2")
    try:
        assert sp.enabled_by_env() and sp.install()
        assert hf_trainer.Trainer.get_sp_size(object()) == 2
        assert hf_trainer.skip_first_batches is not before[2]
    finally:
        sp.uninstall()
    assert (hf_trainer.Trainer.get_train_dataloader, hf_trainer.Trainer.get_sp_size,
            hf_trainer.skip_first_batches) == before
    assert not sp.enabled_by_env({sp.ENV_VAR: "1"}) and not sp.enabled_by_env({sp.ENV_VAR: "off"})
