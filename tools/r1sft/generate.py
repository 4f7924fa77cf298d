"""Ask a model one question through its own chat template (what a user of the exported model would do)."""

from __future__ import annotations

import argparse


def reply(model_dir: str, question: str, max_new_tokens: int = 128, system: str | None = None) -> str:
    """Greedy reply of ``model_dir`` to ``question``, decoded with special tokens removed."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


def _run(args: argparse.Namespace) -> int:
    print(reply(args.model, args.question, args.max_new_tokens, args.system))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generate", help="print a model's greedy reply to one question")
    parser.add_argument("model", help="model folder or hub id")
    parser.add_argument("question")
    parser.add_argument("--system", default=None)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.set_defaults(func=_run)
