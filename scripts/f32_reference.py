#!/usr/bin/env python3
"""An independent f32 forward of a Llama or Qwen2 GGUF in numpy, as a reference for rco's
decoder.

Weights are dequantized by llama.cpp's own `gguf` package; the forward is written out here
in plain numpy (RMSNorm, rotary embeddings — on interleaved pairs for `llama`, on split
halves for `qwen2`, as llama.cpp's NEOX rope — grouped-query attention with the biases
Qwen2 adds to its query/key/value projections, SwiGLU, tied or untied output head). For each prompt (token ids, a JSON list of lists on stdin) it
prints the greedy continuation and the six most likely first tokens with their log-probs.

usage: f32_reference.py MODEL.gguf N_PREDICT < prompt_ids.json
"""
import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def main():
    reader = GGUFReader(sys.argv[1])
    n_predict = int(sys.argv[2])
    weights = {}
    for t in reader.tensors:
        values = dequantize(t.data, t.tensor_type).astype(np.float32)
        weights[t.name] = values.reshape([int(x) for x in reversed(t.shape)])

    def field(key):
        f = reader.fields[key]
        return f.parts[f.data[0]][0]

    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    layers = int(field(f"{arch}.block_count"))
    heads = int(field(f"{arch}.attention.head_count"))
    kv_heads = int(field(f"{arch}.attention.head_count_kv"))
    eps = float(field(f"{arch}.attention.layer_norm_rms_epsilon"))
    theta = float(field(f"{arch}.rope.freq_base"))
    half_split = arch == "qwen2"
    embed = weights["token_embd.weight"]
    head = weights.get("output.weight", embed)
    d = embed.shape[1]
    dh = d // heads
    eos = int(field("tokenizer.ggml.eos_token_id"))

    def rms(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    def log_probs(ids):
        t = len(ids)
        x = embed[ids]
        angles = np.arange(t)[:, None] * theta ** (-np.arange(0, dh, 2) / dh)[None, :]
        cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]

        def rope(q):
            out = np.empty_like(q)
            if half_split:
                a, b = q[..., : dh // 2], q[..., dh // 2 :]
                out[..., : dh // 2] = a * cos - b * sin
                out[..., dh // 2 :] = a * sin + b * cos
                return out
            even, odd = q[..., 0::2], q[..., 1::2]
            out[..., 0::2] = even * cos - odd * sin
            out[..., 1::2] = even * sin + odd * cos
            return out

        mask = np.triu(np.full((t, t), -np.inf, dtype=np.float32), 1)
        for i in range(layers):
            w = lambda name: weights[f"blk.{i}.{name}.weight"]
            bias = lambda name: weights.get(f"blk.{i}.{name}.bias", 0.0)
            h = rms(x, w("attn_norm"))
            q = rope((h @ w("attn_q").T + bias("attn_q")).reshape(t, heads, dh))
            k = np.repeat(rope((h @ w("attn_k").T + bias("attn_k")).reshape(t, kv_heads, dh)), heads // kv_heads, axis=1)
            v = np.repeat((h @ w("attn_v").T + bias("attn_v")).reshape(t, kv_heads, dh), heads // kv_heads, axis=1)
            s = np.einsum("thd,shd->hts", q, k) / np.sqrt(dh) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            x = x + np.einsum("hts,shd->thd", s, v).reshape(t, d) @ w("attn_output").T
            h = rms(x, w("ffn_norm"))
            g = h @ w("ffn_gate").T
            x = x + ((g / (1 + np.exp(-g))) * (h @ w("ffn_up").T)) @ w("ffn_down").T
        logits = rms(x[-1], weights["output_norm.weight"]) @ head.T
        logits = logits - logits.max()
        return logits - np.log(np.exp(logits).sum())

    for ids in json.load(sys.stdin):
        first = log_probs(ids)
        top = [[int(i), float(first[i])] for i in np.argsort(-first)[:6]]
        tokens, current, lp = [], list(ids), first
        for _ in range(n_predict):
            nxt = int(np.argmax(lp))
            if nxt == eos:
                break
            tokens.append(nxt)
            current.append(nxt)
            lp = log_probs(current)
        print(json.dumps({"tokens": tokens, "top6": top}), flush=True)


if __name__ == "__main__":
    main()
