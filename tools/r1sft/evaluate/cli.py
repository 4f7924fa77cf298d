"""``r1sft eval`` and ``r1sft generate``: the command-line face of ``r1sft.evaluate``."""

from __future__ import annotations

import argparse
from pathlib import Path

from r1sft.evaluate.generate import BACKENDS


def _run(args: argparse.Namespace) -> int:
    from r1sft.evaluate.report import markdown_table
    from r1sft.evaluate.runner import evaluate

    report = evaluate(
        args.model, args.data, out=args.out, n=args.n, temperature=args.temperature, top_p=args.top_p,
        max_new_tokens=args.max_new_tokens, limit=args.limit, batch_size=args.batch_size, system=args.system,
        enable_thinking=args.enable_thinking, backend=args.backend, seed=args.seed, problem_key=args.problem_key,
        answer_key=args.answer_key, split=args.split, subset=args.subset,
        trust_remote_code=args.trust_remote_code, progress=not args.no_progress,
        own_stop=args.stop_tokens == "generation-config",
    )
    print(markdown_table(report))
    report_file = Path(report["report_file"])
    print(f"\nreport: {report_file}\nsamples: {report_file.with_name(report['samples_file'])}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from r1sft.evaluate.generate import reply

    print(reply(args.model, args.question, args.max_new_tokens, args.system))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_generate(subparsers)
    parser = subparsers.add_parser(
        "eval", help="generate answers to a problem set and report accuracy and format compliance",
        description="Generate answers with the model's own chat template, extract the final \\boxed{} answer, "
                    "check it with math-verify, and report accuracy (pass@1 over --n samples), format compliance, "
                    "mean length and truncation. See docs/eval.md.",
    )
    parser.add_argument("model", help="model folder (merged or full checkpoint) or hub id")
    parser.add_argument("--data", required=True,
                        help="problem set: .jsonl, .json (array) or .parquet file, or a hub dataset id")
    parser.add_argument("--problem-key", default=None, help="problem column (default: problem, question or prompt)")
    parser.add_argument("--answer-key", default=None,
                        help="answer column (default: answer, solution or expected_answer)")
    parser.add_argument("--split", default="test", help="split of a hub dataset")
    parser.add_argument("--subset", default=None, help="config name of a hub dataset")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N problems")
    parser.add_argument("--n", type=int, default=1, help="samples per problem; accuracy averages pass@1 over them")
    parser.add_argument("--temperature", type=float, default=0.6, help="0 means greedy")
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling")
    parser.add_argument("--max-new-tokens", type=int, default=4096, help="token limit per generation")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="sequences generated at once by the hf backend (prompts x n)")
    parser.add_argument("--system", default=None, help="system prompt (default: none, the template's own)")
    thinking = parser.add_mutually_exclusive_group()
    thinking.add_argument("--enable-thinking", dest="enable_thinking", action="store_true", default=None,
                          help="pass enable_thinking=True to the chat template (Qwen3)")
    thinking.add_argument("--no-thinking", dest="enable_thinking", action="store_false",
                          help="pass enable_thinking=False to the chat template (Qwen3)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="auto: vLLM when installed and CUDA is present, else hf")
    parser.add_argument("--out", default=None,
                        help="report JSON path (default: <model>/eval/<data>.json); samples go to "
                             "<out stem>.samples.jsonl beside it")
    parser.add_argument("--stop-tokens", choices=("all", "generation-config"), default="all",
                        help="stop at the tokenizer's and the model's EOS and the template's end-of-turn token "
                             "(all, default), or only where the model's generation_config.json says, as "
                             "transformers' generate does")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the model's own Python code")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)


def _register_generate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generate", help="print a model's greedy reply to one question",
                                   description="Print a model's greedy reply to one question, in its own chat template.")
    parser.add_argument("model", help="model folder or hub id")
    parser.add_argument("question")
    parser.add_argument("--system", default=None)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.set_defaults(func=_generate)
