#!/usr/bin/env python3
"""`rco serve` against llama.cpp's server on the same GGUF file, as users meet them.

Starts llama.cpp's OpenAI-compatible server (PyPI `xllamacpp`, 2 threads, 8 slots) and
`rco serve` (the binary given, built the way the README builds it), one after the other so
they never share the CPU, and sends each the same 64-token greedy chat completions: one at a
time (4 requests) and 8 at once (twice). Prints completion tokens per second of wall time for
both, and the ratios, as one JSON object.

usage: serve_bench.py RCO_BINARY MODEL.gguf
"""
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_server import start  # noqa: E402

QUESTIONS = [
    "Write a short poem about the sea.",
    "Explain what a hash table is.",
    "Give three tips for learning to cook.",
    "Describe the water cycle.",
    "What makes a good story?",
    "Explain how a bicycle stays upright.",
    "Why is the sky blue?",
    "Describe a walk in the forest.",
]


def ask(base, question):
    body = json.dumps({"messages": [{"role": "user", "content": question}], "max_tokens": 64,
                       "temperature": 0, "model": "m"}).encode()
    request = urllib.request.Request(base + "/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as r:
        return json.load(r)["usage"]["completion_tokens"]


def measure(base):
    ask(base, "Hello.")  # warm up
    start, tokens = time.time(), 0
    for q in QUESTIONS[:4]:
        tokens += ask(base, q)
    alone = tokens / (time.time() - start)
    counts = []
    start = time.time()
    for _ in range(2):
        threads = [threading.Thread(target=lambda q=q: counts.append(ask(base, q))) for q in QUESTIONS]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    together = sum(counts) / (time.time() - start)
    return alone, together


def main():
    binary, model = sys.argv[1], sys.argv[2]
    server, base = start(model, 0, 8, 8 * 1024)
    llama = measure(base)
    del server
    time.sleep(2)
    rco = subprocess.Popen([binary, "serve", "--model", model, "--port", "0", "--batch-size", "8"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = rco.stdout.readline().strip()
        base = line.removeprefix("listening on ").removesuffix("/v1")
        ours = measure(base)
    finally:
        rco.kill()
        rco.wait()
    print(json.dumps({
        "model": os.path.basename(model),
        "rco_one_at_a_time_tok_s": round(ours[0], 1),
        "llama_cpp_one_at_a_time_tok_s": round(llama[0], 1),
        "rco_8_at_once_tok_s": round(ours[1], 1),
        "llama_cpp_8_at_once_tok_s": round(llama[1], 1),
        "ratio_one_at_a_time": round(ours[0] / llama[0], 2),
        "ratio_8_at_once": round(ours[1] / llama[1], 2),
    }))


if __name__ == "__main__":
    main()
