#!/usr/bin/env python3
"""Tensors of a GGUF file dequantized by llama.cpp's own `gguf` package, as a reference for
rco's block decoders: for each tensor name (a JSON list on stdin) prints its type, its first
4096 values in storage order and the sum of all of them.

usage: gguf_tensors.py MODEL.gguf < names.json
"""
import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def main():
    reader = GGUFReader(sys.argv[1])
    tensors = {t.name: t for t in reader.tensors}
    for name in json.load(sys.stdin):
        t = tensors[name]
        values = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
        print(json.dumps({
            "name": name,
            "type": t.tensor_type.name,
            "head": [float(v) for v in values[:4096]],
            "sum": float(values.astype(np.float64).sum()),
        }), flush=True)


if __name__ == "__main__":
    main()
