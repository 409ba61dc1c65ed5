#!/usr/bin/env python3
"""Greedy continuations and first-step top-5 log-probs from a real llama.cpp server.

Starts llama.cpp's OpenAI-compatible server (PyPI package `xllamacpp`) on 127.0.0.1 over a
GGUF file, sends each prompt (one per line of a JSON list on stdin) to `/completion` with
temperature 0, and prints one JSON object per prompt: the generated token ids and, for the
first generated position, the five most likely tokens with their log-probs.

usage: llama_reference.py MODEL.gguf N_PREDICT < prompts.json
"""
import json
import os
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_server import start  # noqa: E402


def main():
    model, n_predict = sys.argv[1], int(sys.argv[2])
    prompts = json.load(sys.stdin)
    server, base = start(model, 0, 1, 512)
    for prompt in prompts:
        body = json.dumps({
            "prompt": prompt, "n_predict": n_predict, "temperature": 0.0, "top_k": 1,
            "n_probs": 5, "return_tokens": True, "cache_prompt": False,
            "post_sampling_probs": False, "samplers": ["top_k"],
        }).encode()
        request = urllib.request.Request(base + "/completion", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=300) as r:
            answer = json.load(r)
        tokenize = urllib.request.Request(base + "/tokenize", data=json.dumps({"content": prompt, "add_special": False, "parse_special": True}).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(tokenize, timeout=60) as r:
            prompt_tokens = json.load(r).get("tokens", [])
        probs = answer.get("completion_probabilities") or []
        first = probs[0].get("top_logprobs") or probs[0].get("probs") if probs else []
        print(json.dumps({
            "prompt": prompt,
            "prompt_tokens": prompt_tokens,
            "tokens": answer.get("tokens", []),
            "text": answer.get("content", ""),
            "top5": [[p.get("id"), p.get("logprob")] for p in (first or [])[:5]],
        }), flush=True)
    del server


if __name__ == "__main__":
    main()
