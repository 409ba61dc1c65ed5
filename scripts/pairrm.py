#!/usr/bin/env python3
"""A tiny PairRM-shaped checkpoint with random weights, and an independent numpy forward of
it: the reference the PairRM (llm-blender/PairRM, DeBERTa-v3 backbone) loader is tested against.

  pairrm.py make DIR [--seed S] [--position-ids]
      writes DIR/config.json, DIR/added_tokens.json, DIR/tokenizer.json and DIR/model.safetensors: the tensor names
      of llm-blender's PairRM checkpoint (`pretrained_model.` + DebertaV2Model names,
      `head_layer.1.*`, `head_layer.4.*`), tiny sizes (hidden 32, 2 layers, 4 heads,
      intermediate 64, 8 position buckets, max_position_embeddings 64, vocabulary 300 whose
      last five ids are [MASK], <|source|>, <|candidate1|>, <|candidate2|>, <|candidate|>,
      as 128000..128004 are in the real one). --position-ids also stores the int64 buffer
      `pretrained_model.embeddings.position_ids` that checkpoints saved by transformers < 4.31
      carry (a loader must skip it). tokenizer.json is a small SentencePiece-style (Unigram,
      Metaspace) tokenizer over ids 0..295 ([MASK] = 295; the loader adds the prefix tokens,
      as llm-blender does), so that text can be judged; the reference reads token ids.
  pairrm.py reference DIR INPUTS.json [--all-layers]
      INPUTS.json is a list of rows, each a list of token ids or {"ids": [...]}, already laid
      out as PairRM lays them out:
        [CLS] <|source|> source… [SEP] [CLS] <|candidate1|> cand1… [SEP] [CLS] <|candidate2|> cand2… [SEP]
      or an object {"rows": [...], "compare": [[i, j], ...]} where row j is row i with the two
      candidates swapped. Rows are right-padded with pad_token_id into one batch (mask 1 on
      real tokens, 0 on padding) and run in float64. Prints JSON:
        {"rows": [{"length": n, "hidden": n x hidden (last encoder layer, real tokens only),
                   ["hidden_states": (layers+1) x n x hidden, with --all-layers],
                   "source_pos": p, "cand1_pos": p, "cand2_pos": p,
                   "left_score": [n_tasks], "right_score": [n_tasks], "logit": float}, ...],
         "compare": [logit_i - logit_j, ...]}      (only with "compare")
      logit is what llm-blender's CrossCompareReranker._forward returns for one order,
      mean(head([h_src; h_c1]) - head([h_src; h_c2])); compare is Blender.compare's default
      "[A,B]+[B,A]" result, logit([A,B]) - logit([B,A]).
  pairrm.py selftest
      make + reference in a temporary directory: shapes, finite values, padding invariance,
      and the vectorised (torch.gather-shaped) disentangled attention against a per-element loop.

Only numpy and the standard library; safetensors is written and read by hand.
"""
import json
import math
import os
import struct
import sys
import tempfile

import numpy as np

D, LAYERS, HEADS, FF, BUCKETS, MAX_POS, TASKS = 32, 2, 4, 64, 8, 64, 1
BASE_VOCAB = 295  # spm pieces 0..294 ([PAD]=0 [CLS]=1 [SEP]=2 [UNK]=3); [MASK]=295
MASK_ID, SOURCE_ID, CAND1_ID, CAND2_ID, CAND_ID = 295, 296, 297, 298, 299
VOCAB = 300
PAD_ID, CLS_ID, SEP_ID = 0, 1, 2

DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8"}


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        kind = "I64" if array.dtype.kind in "iu" else "F32"
        data = np.ascontiguousarray(array, dtype=DTYPES[kind]).tobytes()
        header[name] = {"dtype": kind, "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
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
    """Float tensors as float64; integer tensors (position_ids) are skipped, as a loader should."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = data[start:end]
        if info["dtype"] == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            array = bits.view(np.float32)
        elif info["dtype"] in ("F32", "F16", "F64"):
            array = np.frombuffer(raw, dtype=DTYPES[info["dtype"]])
        else:
            continue
        out[name] = array.reshape(info["shape"]).astype(np.float64)
    return out


def make(directory, seed, position_ids):
    rng = np.random.default_rng(seed)
    w = lambda *shape: rng.normal(0, 0.2, shape)
    ln = lambda p, t: t.update({p + ".weight": 1 + w(D) * 0.5, p + ".bias": w(D) * 0.5})
    t = {}
    p = "pretrained_model."
    t[p + "embeddings.word_embeddings.weight"] = w(VOCAB, D)
    ln(p + "embeddings.LayerNorm", t)
    if position_ids:
        t[p + "embeddings.position_ids"] = np.arange(MAX_POS, dtype=np.int64)[None, :]
    for i in range(LAYERS):
        q = f"{p}encoder.layer.{i}."
        for name in ("query_proj", "key_proj", "value_proj"):
            t[q + f"attention.self.{name}.weight"] = w(D, D)
            t[q + f"attention.self.{name}.bias"] = w(D)
        t[q + "attention.output.dense.weight"] = w(D, D)
        t[q + "attention.output.dense.bias"] = w(D)
        ln(q + "attention.output.LayerNorm", t)
        t[q + "intermediate.dense.weight"] = w(FF, D)
        t[q + "intermediate.dense.bias"] = w(FF)
        t[q + "output.dense.weight"] = w(D, FF)
        t[q + "output.dense.bias"] = w(D)
        ln(q + "output.LayerNorm", t)
    t[p + "encoder.rel_embeddings.weight"] = w(2 * BUCKETS, D)
    ln(p + "encoder.LayerNorm", t)
    t["head_layer.1.weight"] = w(D, 2 * D)
    t["head_layer.1.bias"] = w(D)
    t["head_layer.4.weight"] = w(TASKS, D)
    t["head_layer.4.bias"] = w(TASKS)
    write_safetensors(f"{directory}/model.safetensors", t)
    # The DebertaV2Config keys (as in microsoft/deberta-v3-large and llm-blender/PairRM-hf), the
    # PairRM keys DebertaV2PairRM reads (n_tasks, drop_out, *_prefix_id), and, for convenience,
    # the llm-blender RankerConfig keys that name the layout limits (in llm-blender/PairRM's own
    # config.json these sit beside "model_type": "deberta" and no architecture keys at all).
    config = {
        "architectures": ["DebertaV2PairRM"],
        "model_type": "deberta-v2",
        "vocab_size": VOCAB,
        "hidden_size": D,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "intermediate_size": FF,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": MAX_POS,
        "type_vocab_size": 0,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-7,
        "relative_attention": True,
        "max_relative_positions": -1,
        "position_buckets": BUCKETS,
        "norm_rel_ebd": "layer_norm",
        "share_att_key": True,
        "pos_att_type": ["p2c", "c2p"],
        "position_biased_input": False,
        "pad_token_id": PAD_ID,
        "pooler_dropout": 0,
        "pooler_hidden_act": "gelu",
        "pooler_hidden_size": D,
        "n_tasks": TASKS,
        "drop_out": 0.05,
        "source_prefix_id": SOURCE_ID,
        "cand1_prefix_id": CAND1_ID,
        "cand2_prefix_id": CAND2_ID,
        "cand_prefix_id": CAND_ID,
        "torch_dtype": "float32",
        "ranker_type": "pairranker",
        "source_maxlength": 40,
        "candidate_maxlength": 20,
    }
    with open(f"{directory}/config.json", "w") as f:
        json.dump(config, f, indent=2)
    write_tokenizer(f"{directory}/tokenizer.json")
    added = {"<|candidate1|>": CAND1_ID, "<|candidate2|>": CAND2_ID, "<|candidate|>": CAND_ID,
             "<|source|>": SOURCE_ID, "[MASK]": MASK_ID}
    with open(f"{directory}/added_tokens.json", "w") as f:
        json.dump(added, f, indent=2)


def write_tokenizer(path):
    """A Unigram tokenizer over ids 0..295: [PAD] [CLS] [SEP] [UNK], "▁", single characters and
    "▁"-prefixed ones, a few words, fillers, and [MASK] = 295."""
    pieces = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "\u2581"]
    for c in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-":
        pieces += [c, "\u2581" + c]
    pieces += ["\u2581" + w for w in ("the", "is", "two", "four", "five", "plus", "it", "what")]
    pieces += ["\u2581w%d" % i for i in range(MASK_ID - len(pieces))]
    pieces.append("[MASK]")
    vocab = [[p, 0.0 if i < 4 or i == MASK_ID else -1.0 - 1.0 / len(p)] for i, p in enumerate(pieces)]
    special = lambda i, c: {"id": i, "content": c, "single_word": False, "lstrip": False,
                            "rstrip": False, "normalized": False, "special": True}
    metaspace = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [special(0, "[PAD]"), special(1, "[CLS]"), special(2, "[SEP]"),
                         special(3, "[UNK]"), special(MASK_ID, "[MASK]")],
        "normalizer": None, "pre_tokenizer": metaspace, "post_processor": None, "decoder": metaspace,
        "model": {"type": "Unigram", "unk_id": 3, "vocab": vocab, "byte_fallback": False},
    }
    with open(path, "w") as f:
        json.dump(tokenizer, f)


# ---------------------------------------------------------------- DeBERTa-v2/v3 forward


def layer_norm(x, weight, bias, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x):
    """transformers ACT2FN["gelu"]: the exact erf form."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def make_log_bucket_position(relative_pos, bucket_size, max_position):
    """modeling_deberta_v2.make_log_bucket_position, elementwise (float64 here, float32 in torch;
    the two agree for every |relative_pos| < 4096 with the real 256/512 settings)."""
    sign = np.sign(relative_pos)
    mid = bucket_size // 2
    abs_pos = np.where((relative_pos < mid) & (relative_pos > -mid), mid - 1, np.abs(relative_pos))
    log_pos = np.ceil(np.log(abs_pos / mid) / np.log((max_position - 1) / mid) * (mid - 1)) + mid
    return np.where(abs_pos <= mid, relative_pos, log_pos * sign).astype(np.int64)


def build_relative_position(query_size, key_size, bucket_size, max_position):
    """[query_size, key_size] matrix of (bucketed) q - k."""
    rel = np.arange(query_size)[:, None] - np.arange(key_size)[None, :]
    if bucket_size > 0 and max_position > 0:
        rel = make_log_bucket_position(rel, bucket_size, max_position)
    return rel.astype(np.int64)


class Config:
    def __init__(self, raw):
        self.raw = raw
        self.hidden = raw["hidden_size"]
        self.heads = raw["num_attention_heads"]
        self.head_dim = raw.get("attention_head_size", self.hidden // self.heads)
        self.layers = raw["num_hidden_layers"]
        self.eps = raw.get("layer_norm_eps", 1e-7)
        self.relative_attention = raw.get("relative_attention", False)
        self.max_position_embeddings = raw.get("max_position_embeddings", 512)
        self.max_relative_positions = raw.get("max_relative_positions", -1)
        if self.max_relative_positions < 1:
            self.max_relative_positions = self.max_position_embeddings
        self.position_buckets = raw.get("position_buckets", -1)
        self.att_span = self.position_buckets if self.position_buckets > 0 else self.max_relative_positions
        pos_att_type = raw.get("pos_att_type") or []
        if isinstance(pos_att_type, str):
            pos_att_type = [x.strip() for x in pos_att_type.lower().split("|")]
        self.pos_att_type = pos_att_type
        self.share_att_key = raw.get("share_att_key", False)
        self.norm_rel_ebd = [x.strip() for x in raw.get("norm_rel_ebd", "none").lower().split("|")]
        self.position_biased_input = raw.get("position_biased_input", True)
        self.type_vocab_size = raw.get("type_vocab_size", 0)
        self.pad_token_id = raw.get("pad_token_id", 0)
        if raw.get("conv_kernel_size", 0) > 0:
            sys.exit("conv_kernel_size > 0 (DeBERTa-v2 ConvLayer) is not part of DeBERTa-v3/PairRM")
        if raw.get("hidden_act", "gelu") != "gelu":
            sys.exit(f"hidden_act {raw.get('hidden_act')!r} not supported here")
        self.scale_factor = 1 + ("c2p" in pos_att_type) + ("p2c" in pos_att_type)


def transpose_for_scores(x, heads):
    """[B, N, heads*d] -> [B*heads, N, d], as DisentangledSelfAttention.transpose_for_scores."""
    b, n, _ = x.shape
    return x.reshape(b, n, heads, -1).transpose(0, 2, 1, 3).reshape(b * heads, n, -1)


def disentangled_bias_gather(cfg, q, k, rel, relative_pos, wq, bq, wk, bk):
    """DisentangledSelfAttention.disentangled_attention_bias with share_att_key, written the way
    torch computes it: bmm against the projected relative embeddings, then torch.gather."""
    bh, n, d = q.shape
    span = cfg.att_span
    rel_emb = rel[0: span * 2][None]  # [1, 2S, H]
    reps = bh // cfg.heads
    pos_query = np.tile(transpose_for_scores(rel_emb @ wq.T + bq, cfg.heads), (reps, 1, 1))  # [BH, 2S, d]
    pos_key = np.tile(transpose_for_scores(rel_emb @ wk.T + bk, cfg.heads), (reps, 1, 1))
    scale = math.sqrt(d * cfg.scale_factor)
    score = np.zeros((bh, n, n))
    if "c2p" in cfg.pos_att_type:
        c2p_att = q @ pos_key.transpose(0, 2, 1)  # [BH, N, 2S]
        c2p_pos = np.clip(relative_pos + span, 0, span * 2 - 1)  # [N, N]
        index = np.broadcast_to(c2p_pos, (bh, n, n))
        score += np.take_along_axis(c2p_att, index, axis=-1) / scale
    if "p2c" in cfg.pos_att_type:
        p2c_pos = np.clip(-relative_pos + span, 0, span * 2 - 1)  # r_pos = relative_pos (q len == k len)
        p2c_att = k @ pos_query.transpose(0, 2, 1)  # [BH, Nk, 2S]
        index = np.broadcast_to(p2c_pos, (bh, n, n))
        score += np.take_along_axis(p2c_att, index, axis=-1).transpose(0, 2, 1) / scale
    return score


def disentangled_bias_loop(cfg, q, k, rel, relative_pos, wq, bq, wk, bk):
    """The same bias written per element from the formula, for the self-test:
    c2p[i,j] = q_i . Kr[clip(rel[i,j]+S)] ; p2c[i,j] = k_j . Qr[clip(-rel[j,i]+S)]."""
    bh, n, d = q.shape
    span = cfg.att_span
    scale = math.sqrt(d * cfg.scale_factor)
    rows = rel[0: span * 2]
    out = np.zeros((bh, n, n))
    for x in range(bh):
        h = x % cfg.heads
        sl = slice(h * d, (h + 1) * d)
        qr = rows @ wq[sl].T + bq[sl]
        kr = rows @ wk[sl].T + bk[sl]
        for i in range(n):
            for j in range(n):
                c2p = q[x, i] @ kr[min(max(relative_pos[i, j] + span, 0), 2 * span - 1)]
                p2c = k[x, j] @ qr[min(max(-relative_pos[j, i] + span, 0), 2 * span - 1)]
                out[x, i, j] = (c2p + p2c) / scale
    return out


def encoder_forward(cfg, t, ids, mask, bias_fn=disentangled_bias_gather):
    """DebertaV2Model(input_ids, attention_mask) for a right-padded batch. Returns the list of
    hidden states (embedding output, then each layer's output), each [B, N, H]."""
    p = "pretrained_model."
    b, n = ids.shape
    x = t[p + "embeddings.word_embeddings.weight"][ids]
    if cfg.position_biased_input:
        x = x + t[p + "embeddings.position_embeddings.weight"][np.arange(n)][None]
    if cfg.type_vocab_size > 0:
        x = x + t[p + "embeddings.token_type_embeddings.weight"][0]
    if p + "embeddings.embed_proj.weight" in t:
        x = x @ t[p + "embeddings.embed_proj.weight"].T
    x = layer_norm(x, t[p + "embeddings.LayerNorm.weight"], t[p + "embeddings.LayerNorm.bias"], cfg.eps)
    x = x * mask[:, :, None]
    states = [x]

    att_mask = (mask[:, None, :] * mask[:, :, None]) > 0  # [B, N, N]: query i and key j both real
    rel = relative_pos = None
    if cfg.relative_attention:
        rel = t[p + "encoder.rel_embeddings.weight"]
        if "layer_norm" in cfg.norm_rel_ebd:
            rel = layer_norm(rel, t[p + "encoder.LayerNorm.weight"], t[p + "encoder.LayerNorm.bias"], cfg.eps)
        relative_pos = build_relative_position(n, n, cfg.position_buckets, cfg.max_relative_positions)

    for i in range(cfg.layers):
        q_ = f"{p}encoder.layer.{i}."
        lin = lambda h, name: h @ t[q_ + name + ".weight"].T + t[q_ + name + ".bias"]
        wq, bq = t[q_ + "attention.self.query_proj.weight"], t[q_ + "attention.self.query_proj.bias"]
        wk, bk = t[q_ + "attention.self.key_proj.weight"], t[q_ + "attention.self.key_proj.bias"]
        if not cfg.share_att_key:
            if "p2c" in cfg.pos_att_type:
                wq, bq = t[q_ + "attention.self.pos_query_proj.weight"], t[q_ + "attention.self.pos_query_proj.bias"]
            if "c2p" in cfg.pos_att_type:
                wk, bk = t[q_ + "attention.self.pos_key_proj.weight"], t[q_ + "attention.self.pos_key_proj.bias"]
        q = transpose_for_scores(lin(x, "attention.self.query_proj"), cfg.heads)
        k = transpose_for_scores(lin(x, "attention.self.key_proj"), cfg.heads)
        v = transpose_for_scores(lin(x, "attention.self.value_proj"), cfg.heads)
        scale = math.sqrt(q.shape[-1] * cfg.scale_factor)
        scores = q @ k.transpose(0, 2, 1) / scale
        if cfg.relative_attention:
            scores = scores + bias_fn(cfg, q, k, rel, relative_pos, wq, bq, wk, bk)
        scores = scores.reshape(b, cfg.heads, n, n)
        # XSoftmax: masked entries filled with the dtype's minimum, softmax, masked entries zeroed.
        m = np.broadcast_to(att_mask[:, None], scores.shape)
        filled = np.where(m, scores, np.finfo(np.float64).min)
        probs = np.exp(filled - filled.max(-1, keepdims=True))
        probs = probs / probs.sum(-1, keepdims=True)
        probs = np.where(m, probs, 0.0)
        context = probs.reshape(b * cfg.heads, n, n) @ v
        context = context.reshape(b, cfg.heads, n, -1).transpose(0, 2, 1, 3).reshape(b, n, -1)
        attn = layer_norm(lin(context, "attention.output.dense") + x,
                          t[q_ + "attention.output.LayerNorm.weight"], t[q_ + "attention.output.LayerNorm.bias"], cfg.eps)
        inter = gelu(lin(attn, "intermediate.dense"))
        x = layer_norm(lin(inter, "output.dense") + attn,
                       t[q_ + "output.LayerNorm.weight"], t[q_ + "output.LayerNorm.bias"], cfg.eps)
        states.append(x)
    return states


def head(t, source, cand):
    """head_layer = Sequential(Dropout, Linear(2H,H), Tanh, Dropout, Linear(H,n_tasks)), eval mode."""
    h = np.tanh(np.concatenate([source, cand]) @ t["head_layer.1.weight"].T + t["head_layer.1.bias"])
    return h @ t["head_layer.4.weight"].T + t["head_layer.4.bias"]


def only_position(row, token, name):
    where = [i for i, x in enumerate(row) if x == token]
    if len(where) != 1:
        sys.exit(f"row must hold {name} (id {token}) exactly once, found it {len(where)} times: {row}")
    return where[0]


def reference(directory, inputs, all_layers=False, bias_fn=disentangled_bias_gather):
    raw = json.load(open(f"{directory}/config.json"))
    cfg = Config(raw)
    t = read_safetensors(f"{directory}/model.safetensors")
    rows_in, compare = (inputs["rows"], inputs.get("compare")) if isinstance(inputs, dict) else (inputs, None)
    rows = [r["ids"] if isinstance(r, dict) else r for r in rows_in]
    n = max(len(r) for r in rows)
    ids = np.full((len(rows), n), cfg.pad_token_id, dtype=np.int64)
    mask = np.zeros((len(rows), n))
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    states = encoder_forward(cfg, t, ids, mask, bias_fn)
    last = states[-1]
    out = []
    for i, r in enumerate(rows):
        s = only_position(r, raw["source_prefix_id"], "<|source|>")
        c1 = only_position(r, raw["cand1_prefix_id"], "<|candidate1|>")
        c2 = only_position(r, raw["cand2_prefix_id"], "<|candidate2|>")
        left, right = head(t, last[i, s], last[i, c1]), head(t, last[i, s], last[i, c2])
        item = {"length": len(r), "hidden": last[i, : len(r)].tolist()}
        if all_layers:
            item["hidden_states"] = [h[i, : len(r)].tolist() for h in states]
        item.update({"source_pos": s, "cand1_pos": c1, "cand2_pos": c2, "left_score": left.tolist(),
                     "right_score": right.tolist(), "logit": float((left - right).mean())})
        out.append(item)
    result = {"rows": out}
    if compare is not None:
        result["compare"] = [out[a]["logit"] - out[b]["logit"] for a, b in compare]
    return result


# ---------------------------------------------------------------- self-test


def layout(source, cand1, cand2):
    """PairRM's layout of already-tokenized pieces (no truncation here)."""
    return ([CLS_ID, SOURCE_ID] + source + [SEP_ID] + [CLS_ID, CAND1_ID] + cand1 + [SEP_ID]
            + [CLS_ID, CAND2_ID] + cand2 + [SEP_ID])


def selftest():
    rng = np.random.default_rng(7)
    words = lambda k: [int(x) for x in rng.integers(4, BASE_VOCAB, k)]
    src, a, b = words(9), words(5), words(12)
    long_src, la, lb = words(80), words(40), words(41)  # 170 tokens > max_position_embeddings (64)
    rows = [layout(src, a, b), layout(src, b, a), layout(long_src, la, lb), layout(long_src, lb, la), layout([], [], [])]
    with tempfile.TemporaryDirectory() as d:
        make(d, 0, position_ids=True)
        cfg = Config(json.load(open(f"{d}/config.json")))
        names = set(read_safetensors(f"{d}/model.safetensors"))
        assert "pretrained_model.embeddings.position_ids" not in names and "head_layer.4.bias" in names
        res = reference(d, {"rows": rows, "compare": [[0, 1], [2, 3]]}, all_layers=True)
        for r, row in zip(res["rows"], rows):
            h = np.array(r["hidden"])
            assert h.shape == (len(row), D), h.shape
            assert len(r["hidden_states"]) == LAYERS + 1
            assert np.isfinite(h).all() and math.isfinite(r["logit"])
            assert len(r["left_score"]) == TASKS
        assert res["rows"][0]["source_pos"] == 1 and res["rows"][0]["cand1_pos"] == len(src) + 4
        assert abs(res["compare"][0] - (res["rows"][0]["logit"] - res["rows"][1]["logit"])) < 1e-15
        # Padding invariance: each row alone equals the row inside the padded batch.
        for i, row in enumerate(rows):
            alone = reference(d, [row])["rows"][0]
            diff = np.abs(np.array(alone["hidden"]) - np.array(res["rows"][i]["hidden"])).max()
            assert diff < 1e-12 and abs(alone["logit"] - res["rows"][i]["logit"]) < 1e-12, (i, diff)
        # The gather-shaped disentangled attention against the per-element formula, on a row long
        # enough that bucketed positions saturate and the index clamps are hit.
        loop = reference(d, [rows[2]], bias_fn=disentangled_bias_loop)["rows"][0]
        diff = np.abs(np.array(loop["hidden"]) - np.array(res["rows"][2]["hidden"])).max()
        assert diff < 1e-10, diff
        rel = build_relative_position(len(rows[2]), len(rows[2]), cfg.position_buckets, cfg.max_relative_positions)
        assert rel.min() < -cfg.att_span and rel.max() > cfg.att_span  # clamps are exercised
        assert (rel == -rel.T).all()
        # Buckets of the real DeBERTa-v3 settings (256 buckets, 512 positions) at a few distances.
        real = make_log_bucket_position(np.array([0, 5, -127, 128, 129, 200, -200, 511, 512, 2047]), 256, 512)
        assert real.tolist() == [0, 5, -127, 128, 129, 169, -169, 255, 256, 383], real.tolist()
    print("selftest: ok (%d rows, logits %s, compare %s)" % (
        len(rows), [round(r["logit"], 6) for r in res["rows"]], [round(c, 6) for c in res["compare"]]))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    if sys.argv[1] == "make" and len(sys.argv) >= 3:
        seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 0
        os.makedirs(sys.argv[2], exist_ok=True)
        make(sys.argv[2], seed, "--position-ids" in sys.argv)
    elif sys.argv[1] == "reference" and len(sys.argv) >= 4:
        inputs = json.load(open(sys.argv[3]))
        print(json.dumps(reference(sys.argv[2], inputs, all_layers="--all-layers" in sys.argv)))
    elif sys.argv[1] == "selftest":
        selftest()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
