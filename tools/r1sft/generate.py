"""Ask a model one question through its own chat template (what a user of the exported model would do)."""

from __future__ import annotations

import argparse


def reply(model_dir: str, question: str, max_new_tokens: int = 128, system: str | None = None) -> str:
    """Greedy reply of ``model_dir`` to ``question`` (``r1sft eval``'s generation path, one prompt, no progress bar)."""
    from r1sft.evaluate.generate import SamplingSettings, build_prompts, generate, load_tokenizer, stop_token_ids

    tokenizer = load_tokenizer(model_dir)
    prompts = build_prompts(tokenizer, [question], system=system, model=model_dir)
    settings = SamplingSettings(n=1, temperature=0.0, max_new_tokens=max_new_tokens)
    [[generation]] = generate(model_dir, tokenizer, prompts, settings, backend="hf",
                              stop_ids=stop_token_ids(tokenizer, model_dir), progress=False)
    return generation.text


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
