#!/usr/bin/env python3
"""Serves a GGUF file with llama.cpp's OpenAI-compatible server (PyPI package `xllamacpp`).

Prints `listening on http://127.0.0.1:PORT/v1` once the server is healthy, then serves until
its standard input closes (so a test that spawned it stops it by dropping the pipe) or it is
terminated.

usage: llama_server.py MODEL.gguf [PORT] [PARALLEL] [CONTEXT] [CACHE_MIB]

PARALLEL requests are served at once (default 4), each with CONTEXT tokens of context
(default 1024). CACHE_MIB caps llama.cpp's prompt cache in host memory, the finished
requests' KV states kept for reuse by later prompts with the same prefix; llama.cpp's
default is 8192 MiB per server, which a long run fills (measured: a 1.5B server at 5.4 GB
resident after an hour), so set it where servers share the machine with a training.
"""
import socket
import sys
import time
import urllib.request

import xllamacpp


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model, port=0, parallel=1, n_ctx=512, cache_mib=None):
    """A healthy llama.cpp server on 127.0.0.1 over `model`: (server, base URL)."""
    port = port or free_port()
    params = xllamacpp.CommonParams()
    params.model.path = model
    if cache_mib is not None:
        params.cache_ram_mib = cache_mib
    params.n_parallel = parallel
    params.n_ctx = n_ctx
    params.cpuparams.n_threads = 2
    params.cpuparams_batch.n_threads = 2
    params.port = port
    params.hostnames = ["127.0.0.1"]
    server = xllamacpp.Server(params)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(base + "/health", timeout=5) as r:
                if r.status == 200:
                    return server, base
        except Exception:
            pass
        if time.time() > deadline:
            sys.exit("llama.cpp server did not become healthy in 120 s")
        time.sleep(0.2)


def main():
    model = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    parallel = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    context = int(sys.argv[4]) if len(sys.argv) > 4 else 1024
    cache_mib = int(sys.argv[5]) if len(sys.argv) > 5 else None
    server, base = start(model, port, parallel, context * parallel, cache_mib)
    print(f"listening on {base}/v1", flush=True)
    try:
        sys.stdin.read()
    except KeyboardInterrupt:
        pass
    del server


if __name__ == "__main__":
    main()
