#!/usr/bin/env python3
"""An independent f32 forward of a Llama, Qwen2 or Gemma 3 GGUF in numpy, as a reference for
rco's decoder.

Weights are dequantized by llama.cpp's own `gguf` package; the forward is written out here
in plain numpy (RMSNorm, rotary embeddings — on interleaved pairs for `llama`, on split
halves for `qwen2` and `gemma3`, as llama.cpp's NEOX rope — grouped-query attention with the
biases Qwen2 adds to its query/key/value projections, SwiGLU, tied or untied output head). For each prompt (token ids, a JSON list of lists on stdin) it
prints the greedy continuation and the six most likely first tokens with their log-probs.

Gemma 3 (as llama.cpp's `llm_build_gemma3` computes it): embeddings scaled by sqrt(d_model);
head_dim from `gemma3.attention.key_length`; per-head RMSNorm of queries and keys
(`attn_q_norm`/`attn_k_norm`) before rotation; scores scaled by 1/sqrt(head_dim); an RMSNorm
on the attention output (`post_attention_norm`) and on the FFN output (`post_ffw_norm`)
before each residual add; GeGLU with tanh-approximated GELU. Every sixth layer (5, 11, 17,
...) is global (rope base `gemma3.rope.freq_base`); the others are local: rope base 10000
and a sliding window where query position i sees key positions j with i - j < window. The
GGUF's norm weights already include Gemma's +1. The caller passes the BOS token itself;
greedy decoding stops at llama.cpp's end-of-generation tokens (<eos>, <end_of_turn>, </s>).

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
    gemma = arch == "gemma3"
    half_split = arch in ("qwen2", "gemma3")
    embed = weights["token_embd.weight"]
    head = weights.get("output.weight", embed)
    d = embed.shape[1]
    dh = int(field(f"{arch}.attention.key_length")) if gemma else d // heads
    eos = int(field("tokenizer.ggml.eos_token_id"))
    stops = {eos}
    if gemma:
        # llama.cpp: the sliding-window layers are those with il % 6 < 5 (set_swa_pattern(6)),
        # rotated with base 10000; the rest are global, with the file's freq_base.
        window = int(field(f"{arch}.attention.sliding_window")) if f"{arch}.attention.sliding_window" in reader.fields else 0
        local = [window > 0 and i % 6 < 5 for i in range(layers)]
        thetas = [10000.0 if local[i] else theta for i in range(layers)]
        softcap = float(field(f"{arch}.final_logit_softcapping")) if f"{arch}.final_logit_softcapping" in reader.fields else 0.0
        # llama.cpp ends generation on any end-of-generation token: <eos>, <end_of_turn> and
        # (by its text) </s>.
        tokens_field = reader.fields["tokenizer.ggml.tokens"]
        for token_id, part in enumerate(tokens_field.data):
            if bytes(tokens_field.parts[part]) in (b"<end_of_turn>", b"</s>"):
                stops.add(token_id)

    def rms(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    def gelu(x):
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x * x * x)))

    def rope_at(t, base):
        angles = np.arange(t)[:, None] * base ** (-np.arange(0, dh, 2) / dh)[None, :]
        cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]

        def rope(q):
            out = np.empty_like(q)
            a, b = q[..., : dh // 2], q[..., dh // 2 :]
            out[..., : dh // 2] = a * cos - b * sin
            out[..., dh // 2 :] = a * sin + b * cos
            return out

        return rope

    def gemma_log_probs(ids):
        t = len(ids)
        x = embed[ids] * np.float32(np.sqrt(d))
        pos = np.arange(t)
        causal = np.where(pos[None, :] <= pos[:, None], 0.0, -np.inf).astype(np.float32)
        sliding = np.where((pos[None, :] <= pos[:, None]) & (pos[:, None] - pos[None, :] < window), 0.0, -np.inf).astype(np.float32)
        for i in range(layers):
            w = lambda name: weights[f"blk.{i}.{name}.weight"]
            rope = rope_at(t, thetas[i])
            h = rms(x, w("attn_norm"))
            q = rope(rms((h @ w("attn_q").T).reshape(t, heads, dh), w("attn_q_norm")))
            k = np.repeat(rope(rms((h @ w("attn_k").T).reshape(t, kv_heads, dh), w("attn_k_norm"))), heads // kv_heads, axis=1)
            v = np.repeat((h @ w("attn_v").T).reshape(t, kv_heads, dh), heads // kv_heads, axis=1)
            s = np.einsum("thd,shd->hts", q, k) / np.sqrt(dh) + (sliding if local[i] else causal)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            x = x + rms(np.einsum("hts,shd->thd", s, v).reshape(t, heads * dh) @ w("attn_output").T, w("post_attention_norm"))
            h = rms(x, w("ffn_norm"))
            f = (gelu(h @ w("ffn_gate").T) * (h @ w("ffn_up").T)) @ w("ffn_down").T
            x = x + rms(f, w("post_ffw_norm"))
        logits = rms(x[-1], weights["output_norm.weight"]) @ head.T
        if softcap:
            logits = np.tanh(logits / softcap) * softcap
        logits = logits - logits.max()
        return logits - np.log(np.exp(logits).sum())

    def log_probs(ids):
        if gemma:
            return gemma_log_probs(ids)
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
            if nxt in stops:
                break
            tokens.append(nxt)
            current.append(nxt)
            lp = log_probs(current)
        print(json.dumps({"tokens": tokens, "top6": top}), flush=True)


if __name__ == "__main__":
    main()
