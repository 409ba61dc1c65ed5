#!/usr/bin/env python3
"""Prefill and decode throughput of llama.cpp (PyPI `xllamacpp`) on a GGUF file, on CPU.

Starts the server on 127.0.0.1 with the given thread count and 8 parallel slots, then sends
a fixed ~128-token prompt with `n_predict` tokens to generate, once alone and as 8
concurrent requests. Prints one JSON object: tokens/s for prefill and decode at batch 1 and
8 (prefill from llama.cpp's own timings; batch-8 decode as total generated tokens over the
wall time of the generation phase).

usage: llama_bench.py MODEL.gguf THREADS N_PREDICT
"""
import json
import socket
import sys
import threading
import time
import urllib.request

import xllamacpp

PROMPT = ("The history of the printing press begins in the fifteenth century, when a goldsmith "
          "in Mainz combined movable metal type, oil-based ink and a wooden screw press into a "
          "system that could produce books faster and cheaper than any scribe. Within fifty years "
          "presses were running in more than two hundred cities across Europe, and the number of "
          "books in circulation grew from thousands to millions. Scholars argue about the")


def main():
    model, threads, n_predict = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    params = xllamacpp.CommonParams()
    params.model.path = model
    params.n_ctx = 8 * 512
    params.n_parallel = 8
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.port = port
    params.hostnames = ["127.0.0.1"]
    server = xllamacpp.Server(params)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(base + "/health", timeout=5) as r:
                if r.status == 200:
                    break
        except Exception:
            time.sleep(0.2)

    def complete(i, out):
        body = json.dumps({"prompt": PROMPT + f" {i}", "n_predict": n_predict, "temperature": 0.0,
                           "ignore_eos": True, "cache_prompt": False}).encode()
        req = urllib.request.Request(base + "/completion", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            out[i] = json.load(r)

    result = {"threads": threads, "n_predict": n_predict}
    complete(0, {})  # warm-up
    for batch in (1, 8):
        out = {}
        start = time.time()
        workers = [threading.Thread(target=complete, args=(i, out)) for i in range(batch)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        wall = time.time() - start
        timings = [out[i]["timings"] for i in range(batch)]
        prompt_tokens = sum(t["prompt_n"] for t in timings)
        prompt_ms = max(t["prompt_ms"] for t in timings)
        predicted = sum(t["predicted_n"] for t in timings)
        result[f"prefill_tok_s_batch{batch}"] = prompt_tokens / (prompt_ms / 1000)
        result[f"decode_tok_s_batch{batch}"] = predicted / (wall - prompt_ms / 1000) if batch > 1 else timings[0]["predicted_per_second"]
        result[f"prompt_tokens"] = timings[0]["prompt_n"]
    print(json.dumps(result))
    del server


if __name__ == "__main__":
    main()
