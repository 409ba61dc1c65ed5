#!/usr/bin/env python3
"""An rco judge in Python: the `kind = "command"` protocol in forty lines.

rco starts this program once per worker and keeps it running. It writes one JSON request per
line on stdin and reads one JSON answer per line on stdout (in any order, matched by "id"):

  {"id": "7", "type": "pairwise", "task": "qa", "prompt": "...", "a": "...", "b": "...", "reference": "..."}
  -> {"id": "7", "verdict": "A" | "B" | "tie", "p_a": 0.9}
  {"id": "8", "type": "pointwise", "task": "qa", "prompt": "...", "response": "...", "reference": "..."}
  -> {"id": "8", "score": 10}
  anything it cannot judge -> {"id": "9", "error": "why"}

This one checks answers against the item's reference: an answer that contains the reference
(case and spacing ignored) is correct. Replace `correct` with a call to your own scorer (a
reward model, math-verify, a unit-test harness). Print logs on stderr, never on stdout.
"""
import json
import sys


def normalise(text):
    return " ".join(text.lower().split())


def correct(answer, reference):
    return normalise(reference) in normalise(answer)


def answer(request):
    reference = request.get("reference")
    if not reference:
        return {"error": "the item has no reference"}
    if request["type"] == "pairwise":
        a, b = correct(request["a"], reference), correct(request["b"], reference)
        verdict = "A" if a and not b else "B" if b and not a else "tie"
        return {"verdict": verdict, "p_a": {"A": 1.0, "B": 0.0, "tie": 0.5}[verdict]}
    return {"score": 10 if correct(request["response"], reference) else 1}


for line in sys.stdin:
    request = json.loads(line)
    try:
        reply = answer(request)
    except Exception as e:  # one bad request must not stop the judge
        reply = {"error": f"{type(e).__name__}: {e}"}
    reply["id"] = request["id"]
    print(json.dumps(reply), flush=True)
