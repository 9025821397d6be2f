#!/usr/bin/env python3
"""Golden fixtures for the model families after BERT: small random XLM-RoBERTa, ELECTRA and ModernBERT
sequence classifiers, saved by `transformers` itself (real tensor names), with float64 logits.

Same layout and rules as make_models.py (read it first): for each model, under OUT/<name>/:

  config.json                    the family's config, transformers' own writer
  float32/model.safetensors      the weights in each storage dtype (save_pretrained's tensor names)
  float16/model.safetensors
  bfloat16/model.safetensors
  expected.json                  {"pairs": [{"ids", "typeIds"}], "logits": {dtype: [[...]]}, ...}

Expected logits: the family's *ForSequenceClassification in float64, eager attention, one pair at a time
(no padding), on the weights after rounding to each storage dtype.

The "-long" models have a tiny hidden size so that pairs of up to 8,192 tokens keep the fixtures small;
they exist to check that attention is exact (and tiled, in memory linear in T) on long pairs, and that
ModernBERT's sliding window and rotary embeddings are right far from the start.

Usage: python3 scripts/golden/make_family_models.py OUT_DIR   (committed output: test/fixtures/families/models)
"""

import json
import math
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import (
    ElectraConfig,
    ElectraForSequenceClassification,
    ModernBertConfig,
    ModernBertForSequenceClassification,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def xlmr(layers, hidden, heads, inter, vocab, max_pos, labels):
    # Positions start at pad_token_id + 1 = 2, so max_position_embeddings = longest pair + 2 (514, 8194).
    return XLMRobertaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                            intermediate_size=inter, max_position_embeddings=max_pos + 2, type_vocab_size=1,
                            num_labels=labels, hidden_act="gelu", layer_norm_eps=1e-5, hidden_dropout_prob=0.0,
                            attention_probs_dropout_prob=0.0, classifier_dropout=0.0, pad_token_id=1, bos_token_id=0,
                            eos_token_id=2, architectures=["XLMRobertaForSequenceClassification"])


def electra(layers, hidden, heads, inter, vocab, max_pos, labels, embedding_size):
    return ElectraConfig(vocab_size=vocab, embedding_size=embedding_size, hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, intermediate_size=inter, max_position_embeddings=max_pos,
                         type_vocab_size=2, num_labels=labels, hidden_act="gelu", layer_norm_eps=1e-12,
                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout=0.0,
                         pad_token_id=0, architectures=["ElectraForSequenceClassification"])


def modernbert(layers, hidden, heads, inter, vocab, max_pos, labels, window, every, pooling):
    return ModernBertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                            num_attention_heads=heads, intermediate_size=inter, max_position_embeddings=max_pos,
                            num_labels=labels, hidden_activation="gelu", classifier_activation="gelu",
                            classifier_pooling=pooling, local_attention=window, global_attn_every_n_layers=every,
                            global_rope_theta=160000.0, local_rope_theta=10000.0, norm_eps=1e-5, norm_bias=False,
                            mlp_bias=False, attention_bias=False, classifier_bias=False, attention_dropout=0.0,
                            embedding_dropout=0.0, mlp_dropout=0.0, classifier_dropout=0.0,
                            pad_token_id=vocab - 3, cls_token_id=vocab - 2, sep_token_id=vocab - 1,
                            bos_token_id=vocab - 2, eos_token_id=vocab - 1,
                            architectures=["ModernBertForSequenceClassification"])


# name, family, config, class, lengths to cover (the edges are always included up to the max)
MODELS = [
    ("xlmr-l2-h32", "xlmr", xlmr(2, 32, 4, 64, 320, 512, 1), XLMRobertaForSequenceClassification, 512),
    ("xlmr-long-l1-h16", "xlmr", xlmr(1, 16, 2, 32, 260, 8192, 1), XLMRobertaForSequenceClassification, 8192),
    ("electra-l2-h32-e24", "electra", electra(2, 32, 4, 64, 300, 512, 2, 24), ElectraForSequenceClassification,
     512),
    ("modernbert-l3-h32-mean", "modernbert", modernbert(3, 32, 4, 48, 300, 512, 1, 16, 3, "mean"),
     ModernBertForSequenceClassification, 512),
    ("modernbert-l4-h32-cls", "modernbert", modernbert(4, 32, 2, 40, 280, 512, 2, 8, 2, "cls"),
     ModernBertForSequenceClassification, 512),
    ("modernbert-long-l3-h16", "modernbert", modernbert(3, 16, 2, 24, 260, 8192, 1, 128, 3, "mean"),
     ModernBertForSequenceClassification, 8192),
]
SHORT_FIXED = [2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 255, 256, 257, 384,
               511, 512]
LONG_FIXED = [2, 3, 9, 17, 64, 65, 129, 257, 513, 1000, 2049, 4097, 8191, 8192]


def pair_lengths(max_len, gen):
    if max_len > 512:
        return LONG_FIXED  # few and fixed: each long pair's float64 forward is slow and its ids are large
    lengths = list(SHORT_FIXED)
    while len(lengths) < 48:
        lengths.append(int(torch.randint(2, max_len + 1, (1,), generator=gen)))
    return lengths


def specials(family, config):
    """(first, separator between the texts, last) token ids and whether the document gets type id 1."""
    if family == "xlmr":
        return [0], [2, 2], [2], False  # <s> q </s></s> d </s>, one token type
    if family == "electra":
        return [2], [3], [3], True  # [CLS] q [SEP] d [SEP] as BERT, ids 0..4 the specials
    return [config.cls_token_id], [config.sep_token_id], [config.sep_token_id], False


def make_pair(length, family, config, gen):
    first, mid, last = specials(family, config)[:3]
    body = length - len(first) - len(last)
    if body <= len(mid):  # too short for two texts: first + last alone (2 tokens), or first + body + last
        ids = first + [int(x) for x in torch.randint(5, 100, (max(0, length - 2),), generator=gen)] + last
        return ids[:length], [0] * length
    body -= len(mid)
    q = int(torch.randint(0, min(body, 24) + 1, (1,), generator=gen))
    lo, hi = (5, config.vocab_size) if family != "modernbert" else (0, config.vocab_size - 3)
    words = torch.randint(lo, hi, (body,), generator=gen).tolist()
    ids = first + words[:q] + mid + words[q:] + last
    doc_type = 1 if specials(family, config)[3] else 0
    types = [0] * (len(first) + q + len(mid)) + [doc_type] * (body - q + len(last))
    return ids, types


def randomize(model, gen):
    """Weights large enough that logits vary across pairs, norms not the identity (as make_models.py)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ("LayerNorm" in name or "norm" in name.split(".")[-2]) and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif "embeddings" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * (1.2 / math.sqrt(p.shape[-1])))


def run(model, family, ids, types):
    x = torch.tensor([ids])
    kwargs = {"input_ids": x, "attention_mask": torch.ones_like(x)}
    if family == "electra":
        kwargs["token_type_ids"] = torch.tensor([types])
    return model(**kwargs).logits[0]


def output_layer(model):
    head = model.classifier
    return head.out_proj if hasattr(head, "out_proj") else head


def spread_logits(model, family, pairs, target=1.5):
    with torch.no_grad():
        rows = [run(model, family, i, t) for i, t in pairs[:32]]
        std = torch.stack(rows).std(dim=0)
        out = output_layer(model)
        out.weight.mul_((target / std).unsqueeze(1))
        if out.bias is not None:
            out.bias.mul_(target / std)


def logits_f64(cls, config, family, state, pairs):
    ref = cls(config).double().eval()
    result = ref.load_state_dict({k: v.to(torch.float64) for k, v in state.items()}, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("_ids")]
    if missing or result.unexpected_keys:
        raise SystemExit(f"state dict mismatch: missing {missing}, unexpected {result.unexpected_keys}")
    with torch.no_grad():
        return [[float(v) for v in run(ref, family, i, t)] for i, t in pairs]


def make_model(out_dir, entry, seed):
    name, family, config, cls, max_len = entry
    gen = torch.Generator().manual_seed(seed)
    config._attn_implementation = "eager"
    model = cls(config).eval()
    randomize(model, gen)
    pairs = [make_pair(n, family, config, gen) for n in pair_lengths(max_len, gen)]
    spread_logits(model, family, pairs)

    folder = os.path.join(out_dir, name)
    os.makedirs(folder, exist_ok=True)
    # save_pretrained writes the config and the tensor names exactly as a Hub repository has them.
    model.save_pretrained(folder, safe_serialization=True)
    os.remove(os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "config.json")) as f:
        saved_config = json.load(f)
    saved_config.pop("_attn_implementation", None)
    saved_config.pop("attn_implementation", None)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(saved_config, f, indent=2, sort_keys=True)

    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if "position_ids" not in k}
    # Tied or shared tensors appear once in a checkpoint; none of these heads ties weights.
    expected = {
        "name": name,
        "family": family,
        "reference": f"transformers {transformers.__version__} {cls.__name__}, torch {torch.__version__}, "
        "float64, eager attention, on the weights rounded to each storage dtype",
        "pairs": [{"ids": ids, "typeIds": types} for ids, types in pairs],
        "logits": {},
    }
    for dtype_name, dtype in DTYPES.items():
        rounded = {k: v.to(dtype).contiguous() for k, v in state.items()}
        os.makedirs(os.path.join(folder, dtype_name), exist_ok=True)
        save_file(rounded, os.path.join(folder, dtype_name, "model.safetensors"), metadata={"format": "pt"})
        expected["logits"][dtype_name] = logits_f64(cls, config, family, rounded, pairs)
    col0 = torch.tensor([row[0] for row in expected["logits"]["float32"]])
    expected["logitStd"] = float(col0.std())
    lengths = [len(p[0]) for p in pairs]
    print(f"{name}: {len(pairs)} pairs, lengths {min(lengths)}..{max(lengths)}, logit std {expected['logitStd']:.3f}")
    if expected["logitStd"] < 0.3:
        raise SystemExit(f"{name}: logits vary too little (std {expected['logitStd']:.3f})")
    with open(os.path.join(folder, "expected.json"), "w") as f:
        json.dump(expected, f, separators=(",", ":"))


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "fixtures-family-models"
    torch.manual_seed(0)
    only = set(sys.argv[2].split(",")) if len(sys.argv) > 2 else None
    for i, entry in enumerate(MODELS):
        if only is None or entry[0] in only:
            make_model(out_dir, entry, seed=2000 + i)


if __name__ == "__main__":
    main()
