#!/usr/bin/env python3
"""Preference pairs for `rco judge-eval` from the built task suites (scripts/fetch-data.sh):

- math (`math/test.jsonl`): the reference answer against a wrong one, each ending "#### N".
- code (`code/train.jsonl` and `code/test.jsonl`, all 164 HumanEval problems): the
  canonical solution against a mutant of it (an operator, a comparison or a constant
  changed) that fails the problem's tests, found by running them; problems with no such
  mutant are left out.
- qa (`qa/test.jsonl`, the ToMi stories): the reference location against another location
  the story names, each as a short answer ("In the crate."); stories that name no other
  location are left out.

Usage: scripts/judge_pairs.py [DATA_DIR] [OUT_DIR]   (default: $RCO_DATA_DIR or
~/.cache/rco/data, and DATA_DIR/pairs). Writes OUT_DIR/{math,code,qa}.jsonl,
deterministically, and prints OUT_DIR; a suite that is not built is left out. Each line:
{"id", "subset", "task", "prompt", "chosen", "rejected", "reference", "tests"?,
"entry_point"?}.
"""
import json
import os
import re
import subprocess
import sys
import tempfile


def read(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def wrong_number(reference):
    value = float(reference)
    wrong = value + 1 if value != int(value) or abs(value) < 1000 else value * 2
    return str(int(wrong)) if wrong == int(wrong) else str(wrong)


def math_pairs(data):
    rows = []
    for item in read(os.path.join(data, "math", "test.jsonl")):
        ref = item["reference"]
        wrong = wrong_number(ref)
        rows.append({
            "id": "math/" + item["id"],
            "subset": "math-correct-vs-wrong",
            "task": "math",
            "prompt": item["prompt"],
            "chosen": f"Working through the problem gives {ref}.\n#### {ref}",
            "rejected": f"Working through the problem gives {wrong}.\n#### {wrong}",
            "reference": ref,
        })
    return rows


def qa_pairs(data):
    rows = []
    for item in read(os.path.join(data, "qa", "test.jsonl")):
        if not item["id"].startswith("tomi/"):
            continue
        ref = item["reference"]
        story = item["prompt"].split("\n\nQuestion:")[0]
        places = re.findall(r"(?:is in|to) the (\w+)", story)
        wrong = next((p for p in places if p != ref), None)
        if wrong is None:
            continue
        rows.append({
            "id": "qa/" + item["id"],
            "subset": "qa-tomi-correct-vs-wrong",
            "task": "qa",
            "prompt": item["prompt"],
            "chosen": f"In the {ref}.",
            "rejected": f"In the {wrong}.",
            "reference": ref,
        })
    return rows


MUTATIONS = [
    (r"<=", "<"), (r">=", ">"), (r"(?<![<>=!])<(?![<=])", "<="), (r"(?<![<>=!-])>(?![>=])", ">="),
    (r"==", "!="), (r"!=", "=="), (r"(?<![+\-*/=])\+(?![+=])", "-"), (r"(?<![+\-*/=<>!e])-(?![-=>])", "+"),
    (r"\band\b", "or"), (r"\bor\b", "and"), (r"\bTrue\b", "False"), (r"\bFalse\b", "True"),
    (r"(?<![\w.])1(?![\w.])", "2"), (r"(?<![\w.])0(?![\w.])", "1"), (r"\breturn\b", "return None and"),
]


def mutants(body):
    for pattern, replacement in MUTATIONS:
        for match in re.finditer(pattern, body):
            yield body[: match.start()] + replacement + body[match.end():]


def passes(program, tests, entry_point):
    source = program + "\n\n" + tests + f"\n\ncheck({entry_point})\n"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            done = subprocess.run([sys.executable, "-I", "-c", source], cwd=tmp,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=5)
        except subprocess.TimeoutExpired:
            return False
    return done.returncode == 0


def code_pairs(data):
    rows = []
    items = read(os.path.join(data, "code", "train.jsonl")) + read(os.path.join(data, "code", "test.jsonl"))
    items.sort(key=lambda i: int(i["id"].split("/")[1]))
    for item in items:
        prompt, solution = item["prompt"], item["reference"]
        body = solution[len(prompt):] if solution.startswith(prompt) else solution
        for mutant in mutants(body):
            if not passes(prompt + mutant, item["tests"], item["entry_point"]):
                rows.append({
                    "id": "code/" + item["id"],
                    "subset": "code-canonical-vs-mutant",
                    "task": "code",
                    "prompt": prompt,
                    "chosen": "```python\n" + prompt + body + "```",
                    "rejected": "```python\n" + prompt + mutant + "```",
                    "reference": solution,
                    "tests": item["tests"],
                    "entry_point": item["entry_point"],
                })
                break
    return rows


# Each suite's pair builder, by suite name.
PAIRS = {"math": math_pairs, "code": code_pairs, "qa": qa_pairs}


def main():
    data = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("RCO_DATA_DIR") or os.path.expanduser("~/.cache/rco/data")
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(data, "pairs")
    os.makedirs(out, exist_ok=True)
    built = {s: f for s, f in PAIRS.items() if os.path.exists(os.path.join(data, s, "test.jsonl"))}
    if not built:
        sys.exit(f"no task suite built in {data}: run scripts/fetch-data.sh first")
    for suite, pairs in built.items():
        write(os.path.join(out, suite + ".jsonl"), pairs(data))
    print(out)


if __name__ == "__main__":
    main()
