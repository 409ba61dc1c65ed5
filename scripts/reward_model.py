#!/usr/bin/env python3
"""A small Hugging Face sequence-classification checkpoint with random weights, and an
independent numpy forward of it: the reference the reward-model loader is tested against.

  reward_model.py make DIR VOCAB [--arch llama|qwen2] [--seed S] [--rope-scaling llama3|linear]
      writes DIR/config.json and DIR/model.safetensors (the real tensor names and config
      keys of LlamaForSequenceClassification / Qwen2ForSequenceClassification, tiny sizes)
      for a vocabulary of VOCAB tokens (the tokenizer files are the caller's); with
      --rope-scaling, a `rope_scaling` as Llama 3.1 has it (llama3: factor 8, low/high
      frequency factors 1 and 4, original_max_position_embeddings 64, so that the tiny
      head's four frequencies fall in all three of its regimes) or a linear factor of 4.
  reward_model.py reference DIR IDS.json
      prints, as JSON, the reward (score head's first output at the last token) of each
      row of token ids in IDS.json, computed here with numpy in float64.

Only numpy; the safetensors file is written by hand (an 8-byte header length, a JSON
header, the raw little-endian data).
"""
import json
import math
import struct
import sys

import numpy as np

D, LAYERS, HEADS, KV_HEADS, FF, LABELS = 32, 2, 4, 2, 64, 1


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(data[start:end], dtype="<f4").reshape(info["shape"]).astype(np.float64)
    return out


ROPE_SCALING = {
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64},
    "linear": {"rope_type": "linear", "factor": 4.0},
}


def make(directory, vocab, arch, seed, rope_scaling=None):
    rng = np.random.default_rng(seed)
    dh = D // HEADS
    w = lambda *shape: rng.normal(0, 0.2, shape)
    t = {"model.embed_tokens.weight": w(vocab, D), "model.norm.weight": 1 + w(D) * 0.5, "score.weight": w(LABELS, D)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        t[p + "self_attn.q_proj.weight"] = w(HEADS * dh, D)
        t[p + "self_attn.k_proj.weight"] = w(KV_HEADS * dh, D)
        t[p + "self_attn.v_proj.weight"] = w(KV_HEADS * dh, D)
        t[p + "self_attn.o_proj.weight"] = w(D, HEADS * dh)
        if arch == "qwen2":
            t[p + "self_attn.q_proj.bias"] = w(HEADS * dh)
            t[p + "self_attn.k_proj.bias"] = w(KV_HEADS * dh)
            t[p + "self_attn.v_proj.bias"] = w(KV_HEADS * dh)
        t[p + "mlp.gate_proj.weight"] = w(FF, D)
        t[p + "mlp.up_proj.weight"] = w(FF, D)
        t[p + "mlp.down_proj.weight"] = w(D, FF)
        t[p + "input_layernorm.weight"] = 1 + w(D) * 0.5
        t[p + "post_attention_layernorm.weight"] = 1 + w(D) * 0.5
    write_safetensors(f"{directory}/model.safetensors", t)
    config = {
        "architectures": ["Qwen2ForSequenceClassification" if arch == "qwen2" else "LlamaForSequenceClassification"],
        "model_type": arch,
        "vocab_size": vocab,
        "hidden_size": D,
        "intermediate_size": FF,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0 if arch == "llama" else 1000000.0,
        "tie_word_embeddings": False,
        "num_labels": LABELS,
        "id2label": {"0": "LABEL_0"},
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }
    if rope_scaling:
        config["rope_scaling"] = ROPE_SCALING[rope_scaling]
    with open(f"{directory}/config.json", "w") as f:
        json.dump(config, f, indent=2)


def rms(x, weight, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def inverse_frequencies(theta, dh, scaling):
    """transformers' default rotary frequencies, and _compute_linear_scaling /
    _compute_llama3_parameters applied to them."""
    inv = 1.0 / theta ** (np.arange(0, dh, 2) / dh)
    if not scaling:
        return inv
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "linear":
        return inv / scaling["factor"]
    assert kind == "llama3", kind
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / low, old / high
    wavelen = 2 * math.pi / inv
    llama = np.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * llama / factor + smooth * llama
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return np.where(medium, smoothed, llama)


def reward(directory, ids):
    config = json.load(open(f"{directory}/config.json"))
    t = read_safetensors(f"{directory}/model.safetensors")
    heads, kv, d = config["num_attention_heads"], config["num_key_value_heads"], config["hidden_size"]
    dh, eps, theta = d // heads, config["rms_norm_eps"], config["rope_theta"]
    n = len(ids)
    x = t["model.embed_tokens.weight"][ids]
    inv = inverse_frequencies(theta, dh, config.get("rope_scaling"))
    freqs = np.outer(np.arange(n), inv)
    emb = np.concatenate([freqs, freqs], axis=-1)
    cos, sin = np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms(x, t[p + "input_layernorm.weight"], eps)
        lin = lambda name: h @ t[p + name + ".weight"].T + t.get(p + name + ".bias", 0)
        q = lin("self_attn.q_proj").reshape(n, heads, dh)
        k = lin("self_attn.k_proj").reshape(n, kv, dh)
        v = lin("self_attn.v_proj").reshape(n, kv, dh)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        out = np.zeros((n, heads, dh))
        for head in range(heads):
            g = head // (heads // kv)
            scores = q[:, head] @ k[:, g].T / np.sqrt(dh) + mask
            weights = np.exp(scores - scores.max(-1, keepdims=True))
            weights /= weights.sum(-1, keepdims=True)
            out[:, head] = weights @ v[:, g]
        x = x + out.reshape(n, heads * dh) @ t[p + "self_attn.o_proj.weight"].T
        h = rms(x, t[p + "post_attention_layernorm.weight"], eps)
        gate = h @ t[p + "mlp.gate_proj.weight"].T
        up = h @ t[p + "mlp.up_proj.weight"].T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ t[p + "mlp.down_proj.weight"].T
    x = rms(x, t["model.norm.weight"], eps)
    return float((x[-1] @ t["score.weight"].T)[0])


def main():
    if sys.argv[1] == "make":
        arch = sys.argv[sys.argv.index("--arch") + 1] if "--arch" in sys.argv else "llama"
        seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 0
        scaling = sys.argv[sys.argv.index("--rope-scaling") + 1] if "--rope-scaling" in sys.argv else None
        make(sys.argv[2], int(sys.argv[3]), arch, seed, scaling)
    elif sys.argv[1] == "reference":
        rows = json.load(open(sys.argv[3]))
        print(json.dumps([reward(sys.argv[2], row) for row in rows]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
