"""Write the bundled sample datasets: small synthetic reasoning problems in the real schemas of
Bespoke-Stratos-17k (``bespoke_stratos_sample.jsonl``) and Magpie-Reasoning-V2 (``magpie_reasoning_sample.jsonl``).

Deterministic (fixed seeds, no clock): running it again gives byte-identical files. Each problem has a short, genuine
step-by-step chain of thought and a ``\\boxed{}`` answer, so the conversation stays under ~600 characters and the demo
can train a tiny model on CPU. The Bespoke rows carry the real Bespoke-Stratos system prompt with its literal
backslash-n (``'\\n\\n'``), exactly as the hub copy does; the converter recognises and (by default) drops it.

    python data/samples/make_samples.py
"""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path

from r1sft.data.system_prompts import R1_SYSTEM_PROMPT_LITERAL_NEWLINES

HERE = Path(__file__).resolve().parent
ROWS_PER_SAMPLE = 40
NAMES = ["Maria", "Ken", "Aisha", "Tom", "Lena", "Ravi", "Sofia", "Omar", "Mei", "Jonas"]
ITEMS = ["apples", "marbles", "stickers", "books", "pencils", "cookies"]

# Bespoke-Stratos-17k's system prompt, byte for byte as the hub copy has it: "\\n\\n" is a literal backslash-n.
BESPOKE_SYSTEM_PROMPT = R1_SYSTEM_PROMPT_LITERAL_NEWLINES  # the hub copies' byte variant (literal backslash-n)
BOXED_PREFIX = "Return your final response within \\boxed{}. "


def addition(rng: random.Random):
    a, b = rng.randint(12, 89), rng.randint(12, 89)
    tens, ones = a // 10 * 10 + b // 10 * 10, a % 10 + b % 10
    return (f"What is {a} + {b}?",
            [f"I need the sum of {a} and {b}.",
             f"Tens first: {a // 10 * 10} + {b // 10 * 10} = {tens}. Then ones: {a % 10} + {b % 10} = {ones}.",
             f"Together: {tens} + {ones} = {a + b}."],
            f"{a} + {b} = {a + b}", a + b, "add two-digit numbers")


def multiplication(rng: random.Random):
    a, b = rng.randint(3, 9), rng.randint(12, 49)
    high, low = b // 10 * 10, b % 10
    return (f"What is {a} times {b}?",
            [f"Split {b} into {high} + {low}.",
             f"{a} x {high} = {a * high} and {a} x {low} = {a * low}.",
             f"Adding the parts: {a * high} + {a * low} = {a * b}."],
            f"{a} x {b} = {a * b}", a * b, "multiply using the distributive property")


def shopping(rng: random.Random):
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    have, bought, gave = rng.randint(5, 20), rng.randint(3, 15), rng.randint(1, 5)
    total = have + bought - gave
    return (f"{name} has {have} {item}. {name} buys {bought} more and gives {gave} to a friend. "
            f"How many {item} does {name} have now?",
            [f"Start with {have} {item}.",
             f"After buying {bought} more: {have} + {bought} = {have + bought}.",
             f"After giving away {gave}: {have + bought} - {gave} = {total}."],
            f"{have} + {bought} - {gave} = {total}", total, "track a quantity through additions and subtractions")


def linear_equation(rng: random.Random):
    a, x, b = rng.randint(2, 9), rng.randint(1, 12), rng.randint(1, 30)
    c = a * x + b
    return (f"Solve for x: {a}x + {b} = {c}.",
            [f"Subtract {b} from both sides: {a}x = {c - b}.",
             f"Divide both sides by {a}: x = {c - b} / {a} = {x}.",
             f"Check: {a} x {x} + {b} = {a * x + b}, which matches {c}."],
            f"{a}x = {c - b}, so x = {x}", x, "solve a one-step linear equation")


def rectangle(rng: random.Random):
    w, h = rng.randint(3, 15), rng.randint(3, 15)
    return (f"A rectangle is {w} cm wide and {h} cm tall. What is its perimeter in cm?",
            ["The perimeter of a rectangle is 2 x (width + height).",
             f"Width plus height: {w} + {h} = {w + h}.",
             f"Doubling: 2 x {w + h} = {2 * (w + h)}."],
            f"P = 2 x ({w} + {h}) = {2 * (w + h)} cm", 2 * (w + h), "use the perimeter formula")


def percentage(rng: random.Random):
    p, n = rng.choice([10, 20, 25, 50, 75]), rng.choice([40, 80, 120, 200, 360])
    return (f"What is {p}% of {n}?",
            [f"{p}% means {p}/100.",
             f"{n} / 100 = {n / 100:g}, and {n / 100:g} x {p} = {n * p // 100}."],
            f"{p}% of {n} = {n * p // 100}", n * p // 100, "compute a percentage")


def sequence(rng: random.Random):
    a, d = rng.randint(1, 20), rng.randint(2, 9)
    terms = [a + d * i for i in range(4)]
    return (f"What number comes next: {', '.join(map(str, terms))}, ...?",
            [f"The differences are {terms[1] - terms[0]}, {terms[2] - terms[1]}, {terms[3] - terms[2]}: "
             f"the step is always {d}.",
             f"So the next term is {terms[3]} + {d} = {terms[3] + d}."],
            f"arithmetic sequence with step {d}: next term {terms[3] + d}", terms[3] + d,
            "continue an arithmetic sequence")


def parity(rng: random.Random):
    n = rng.randint(3, 12)
    answer = "even" if n % 2 == 0 else "odd"
    return (f"Is the sum of {n} odd numbers even or odd?",
            ["Two odd numbers add up to an even number, so odd numbers cancel in pairs.",
             f"{n} odd numbers make {n // 2} pairs" + (" and one left over." if n % 2 else "."),
             f"The pairs sum to an even number{', and one more odd number makes it odd' if n % 2 else ''}."],
            f"{n} is {answer}, so the sum is {answer}", f"\\text{{{answer}}}", "reason about parity")


def ordering(rng: random.Random):
    a, b, c = rng.sample(NAMES, 3)
    return (f"{a} is taller than {b}, and {b} is taller than {c}. Who is the shortest?",
            [f"{a} > {b} and {b} > {c} in height.",
             f"Taller is transitive, so {a} > {b} > {c}.",
             f"The last in the chain, {c}, is the shortest."],
            f"{a} > {b} > {c}, so the shortest is {c}", f"\\text{{{c}}}", "order items by a transitive relation")


FAMILIES = [addition, multiplication, shopping, linear_equation, rectangle, percentage, sequence, parity, ordering]


def problems(seed: int):
    """``ROWS_PER_SAMPLE`` distinct problems, cycling through the families."""
    rng = random.Random(seed)
    seen = set()
    for i in range(ROWS_PER_SAMPLE):
        problem = FAMILIES[i % len(FAMILIES)](rng)
        while problem[0] in seen:  # a sample with duplicate questions would teach `--dedupe` nothing
            problem = FAMILIES[i % len(FAMILIES)](rng)
        seen.add(problem[0])
        yield problem


def bespoke_row(problem) -> dict:
    question, steps, derivation, answer, _ = problem
    thought = "\n\n".join(["Okay, let's see. " + steps[0], *steps[1:]])
    solution = f"{derivation}.\n\n\\boxed{{{answer}}}"
    return {
        "system": BESPOKE_SYSTEM_PROMPT,
        "conversations": [
            {"from": "user", "value": BOXED_PREFIX + question},
            {"from": "assistant", "value": f"<|begin_of_thought|>\n\n{thought}\n\n<|end_of_thought|>\n\n"
                                           f"<|begin_of_solution|>\n\n{solution}\n\n<|end_of_solution|>"},
        ],
    }


def magpie_row(index: int, problem, rng: random.Random) -> dict:
    question, steps, derivation, answer, skill = problem
    response = "<think>\n" + "\n\n".join(steps) + "\n</think>\n\n" + f"{derivation}. The answer is \\boxed{{{answer}}}."
    return {
        "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "instruction": question,
        "response": response,
        "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": response}],
        "gen_input_configs": {"temperature": 1.0, "top_p": 1.0,
                              "input_generator": "meta-llama/Llama-3.3-70B-Instruct", "seed": None},
        "intent": f"The user wants to {skill}.",
        "knowledge": "To solve this problem, the models need to know basic arithmetic.",
        "difficulty": "easy" if index % 3 else "very easy",
        "input_quality": "excellent" if index % 4 == 0 else "good",
        "quality_explanation": "The query is clear, specific and well-formed.",
        "task_category": "Math",
        "other_task_category": ["Reasoning"],
        "language": "EN",
    }


def write_jsonl(path: Path, rows) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def main() -> None:
    write_jsonl(HERE / "bespoke_stratos_sample.jsonl", (bespoke_row(p) for p in problems(17)))
    rng = random.Random(250)
    write_jsonl(HERE / "magpie_reasoning_sample.jsonl",
                (magpie_row(i, p, rng) for i, p in enumerate(problems(250))))


if __name__ == "__main__":
    main()
