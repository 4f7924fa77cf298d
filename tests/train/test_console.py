"""`r1sft train`'s console: LLaMA-Factory's output (as a CPU run of the tiny recipe prints it) becomes a progress line,
r1sft's own lines, and on failure the cause in one line."""

from __future__ import annotations

import io

from r1sft.train.console import Console

# What llamafactory-cli train prints, abridged from a real 3-step run: tqdm redraws with \r, and writes each log dict
# after clearing its bar (\r, spaces, \r).
RUN = (
    "[INFO|2026-12-03 18:43:08] llamafactory.hparams.parser:523 >> Process rank: 0, world size: 1, device: cpu\n"
    "[INFO|configuration_utils.py:847] 2026-12-03 18:43:08,165 >> Model config Qwen3Config {\n"
    '  "architectures": [\n    "Qwen3ForCausalLM"\n  ],\n}\n'
    "r1sft: LoRA linears run as one autograd function (pid 14188)\n"
    "Running tokenizer on dataset:   0%|          | 0/80 [00:00<?, ? examples/s]\r"
    "Running tokenizer on dataset: 100%|██████████| 80/80 [00:00<00:00, 3640.61 examples/s]\n"
    "training example:\ninput_ids:\n[1025, 297]\ninputs:\nValueError: text in a sample is not an error\n"
    "[INFO|trainer.py:1478] 2026-12-03 18:43:09,099 >>   Total optimization steps = 3\n"
    "  0%|          | 0/3 [00:00<?, ?it/s]\r 33%|███▎      | 1/3 [00:00<00:00,  9.08it/s]"
    "\r                                             \r{'loss': '6.952', 'grad_norm': '1.09', 'learning_rate': '0', "
    "'epoch': '0.1', 'num_input_tokens_seen': '1234', 'train_runtime': '0.1', 'train_tokens_per_second': '1500'}\n"
    " 33%|███▎      | 1/3 [00:00<00:00,  9.08it/s]\r 67%|██████▋   | 2/3 [00:00<00:00,  9.39it/s]"
    "\r                                             \r{'loss': '6.937', 'train_tokens_per_second': '1700'}\n"
    "[INFO|trainer.py:3815] 2026-12-03 18:43:09,428 >> Saving model checkpoint to saves/x/checkpoint-2\n"
    " 67%|██████▋   | 2/3 [00:00<00:00,  9.39it/s]\r100%|██████████| 3/3 [00:00<00:00,  9.42it/s]"
    "\r                                             \r{'loss': '6.851', 'train_tokens_per_second': '1800'}\n"
    "\r                                             \r{'train_runtime': '0.3275', 'train_samples_per_second': '73.29', "
    "'train_loss': '6.913', 'epoch': '0.3'}\n"
    "***** train metrics *****\n  epoch                    =        0.3\n"
    "r1sft: LoRA linears: 168 calls fused, 0 left to PEFT\n"
)


def _run(text: str, tty: bool = False, chunk: int = 7) -> tuple[Console, str]:
    out = io.StringIO()
    console = Console(out, tty=tty)
    data = text.encode()
    for start in range(0, len(data), chunk):  # in pieces, as a pipe delivers it (multi-byte characters split)
        console.feed(data[start:start + chunk])
    console.close()
    return console, out.getvalue()


def test_a_run_becomes_r1sfts_lines_and_a_progress_line():
    console, out = _run(RUN)
    assert out.splitlines() == [
        "r1sft: LoRA linears run as one autograd function (pid 14188)",
        "r1sft: step 1/3 (33%)  elapsed 00:00  ETA 00:00",
        "r1sft: LoRA linears: 168 calls fused, 0 left to PEFT",
        "r1sft: step 3/3 (100%)  loss 6.851  1,800 tokens/s  elapsed 00:00  saved checkpoint-2",
    ]
    assert console.progress.train_loss == 6.913 and console.error is None  # sample text is not a failure


def test_on_a_terminal_the_progress_line_redraws_in_place():
    _, out = _run(RUN, tty=True)
    assert out.count("\r\x1b[Kr1sft: step ") >= 3 and "Model config" not in out
    assert out.endswith("saved checkpoint-2\n")


def test_a_failure_is_its_cause_in_one_line():
    failed = RUN[:RUN.index("***** train")] + (
        "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
        "[rank0]: ValueError: Your setup doesn't support bf16/gpu.\n"
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
    )
    console, _ = _run(failed)
    assert console.error == "ValueError: Your setup doesn't support bf16/gpu."
