#!/usr/bin/env python3
"""Golden fixtures for the engines: small random BERT cross-encoders and their float64 logits.

Runs where PyTorch and Hugging Face `transformers` are installed (the reference implementation; not on
the development machines). For each model it writes, under OUT/<name>/:

  config.json                    BertForSequenceClassification config (transformers' own writer)
  float32/model.safetensors      the weights in each storage dtype
  float16/model.safetensors
  bfloat16/model.safetensors
  expected.json                  {"pairs": [{"ids", "typeIds"}], "logits": {dtype: [[...]]}, ...}

The expected logits for a dtype are computed by transformers' BertForSequenceClassification in float64
on the weights *after* rounding to that dtype, one pair at a time (no padding), so an engine that reads
the 16-bit file and computes in float32 must land within float32 rounding of them.

Usage: python3 scripts/golden/make_models.py OUT_DIR
"""

import json
import math
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import BertConfig, BertForSequenceClassification

# name, layers, hidden, heads, intermediate, vocab, max positions, labels. Small vocabularies and FFNs
# keep all fixtures (3 models x 3 dtypes) near 3 MB; 512 positions let pairs span lengths 2..512.
MODELS = [
    ("tiny-l2-h64", 2, 64, 4, 128, 256, 512, 1),
    ("small-l3-h96", 3, 96, 6, 64, 300, 128, 3),
    ("cased-l2-h32", 2, 32, 2, 64, 600, 512, 2),
]
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
PAIRS_PER_MODEL = 64
CLS, SEP = 2, 3  # ids 0..4 play the special tokens ([PAD], [UNK], [CLS], [SEP], [MASK])


def pair_lengths(max_len, count, gen):
    """Lengths spanning 2..max_len: the edges and powers of two around them, then seeded random ones."""
    fixed = [2, 3, 4, 5, 7, 8, 9, 16, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 255, 256, 257, 384, 511, 512]
    lengths = [n for n in fixed if n <= max_len]
    while len(lengths) < count:
        lengths.append(int(torch.randint(2, max_len + 1, (1,), generator=gen)))
    return lengths[:count]


def make_pair(length, vocab, gen):
    """[CLS] query [SEP] document [SEP] with token types 0/1; length 2 is [CLS] [SEP] alone."""
    if length == 2:
        return [CLS, SEP], [0, 0]
    body = length - 3
    q = int(torch.randint(0, min(body, 24) + 1, (1,), generator=gen)) if body > 0 else 0
    d = body - q
    words = torch.randint(5, vocab, (body,), generator=gen).tolist()
    ids = [CLS] + words[:q] + [SEP] + words[q:] + [SEP]
    types = [0] * (q + 2) + [1] * (d + 1)
    return ids, types


def randomize(model, gen):
    """Weights large enough that logits vary across pairs (std >= 0.5), LayerNorms not the identity."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif "LayerNorm.bias" in name or name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif "embeddings" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p.shape[-1]
                p.copy_(torch.randn(p.shape, generator=gen) * (1.2 / math.sqrt(fan_in)))


def spread_logits(model, pairs, target=1.5):
    """Scale the classifier (logits are linear in it) so every label's logit has std `target`."""
    with torch.no_grad():
        rows = [model(input_ids=torch.tensor([i]), token_type_ids=torch.tensor([t])).logits[0] for i, t in pairs]
        std = torch.stack(rows).std(dim=0)
        model.classifier.weight.mul_((target / std).unsqueeze(1))
        model.classifier.bias.mul_(target / std)


def logits_f64(model, state, pairs):
    ref = BertForSequenceClassification(model.config).double().eval()
    result = ref.load_state_dict({k: v.to(torch.float64) for k, v in state.items()}, strict=False)
    # Only buffers (position ids, token type ids) may be absent from a saved state dict.
    missing = [k for k in result.missing_keys if not k.endswith("_ids")]
    if missing or result.unexpected_keys:
        raise SystemExit(f"state dict mismatch: missing {missing}, unexpected {result.unexpected_keys}")
    out = []
    with torch.no_grad():
        for ids, types in pairs:
            x = torch.tensor([ids])
            t = torch.tensor([types])
            logits = ref(input_ids=x, token_type_ids=t, attention_mask=torch.ones_like(x)).logits
            out.append([float(v) for v in logits[0]])
    return out


def make_model(out_dir, spec, seed):
    name, layers, hidden, heads, inter, vocab, max_pos, labels = spec
    gen = torch.Generator().manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=inter,
        max_position_embeddings=max_pos,
        type_vocab_size=2,
        num_labels=labels,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=0,
        architectures=["BertForSequenceClassification"],
    )
    config._attn_implementation = "eager"
    model = BertForSequenceClassification(config).eval()
    randomize(model, gen)
    pairs = [make_pair(n, vocab, gen) for n in pair_lengths(max_pos, PAIRS_PER_MODEL, gen)]
    spread_logits(model, pairs)

    folder = os.path.join(out_dir, name)
    os.makedirs(folder, exist_ok=True)
    config.to_json_file(os.path.join(folder, "config.json"))
    expected = {
        "name": name,
        "reference": f"transformers {transformers.__version__} BertForSequenceClassification, torch "
        f"{torch.__version__}, float64 on the weights rounded to each storage dtype",
        "pairs": [{"ids": ids, "typeIds": types} for ids, types in pairs],
        "logits": {},
    }
    state = {k: v.detach().clone() for k, v in model.state_dict().items() if "position_ids" not in k}
    for dtype_name, dtype in DTYPES.items():
        rounded = {k: v.to(dtype).contiguous() for k, v in state.items()}
        os.makedirs(os.path.join(folder, dtype_name), exist_ok=True)
        save_file(rounded, os.path.join(folder, dtype_name, "model.safetensors"), metadata={"format": "pt"})
        expected["logits"][dtype_name] = logits_f64(model, rounded, pairs)

    col0 = torch.tensor([row[0] for row in expected["logits"]["float32"]])
    expected["logitStd"] = float(col0.std())
    print(f"{name}: {len(pairs)} pairs, lengths {min(map(len, (p[0] for p in pairs)))}.."
          f"{max(map(len, (p[0] for p in pairs)))}, logit std {expected['logitStd']:.3f}")
    if expected["logitStd"] < 0.5:
        raise SystemExit(f"{name}: logits vary too little (std {expected['logitStd']:.3f})")
    with open(os.path.join(folder, "expected.json"), "w") as f:
        json.dump(expected, f, separators=(",", ":"))


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "fixtures-models"
    torch.manual_seed(0)
    for i, spec in enumerate(MODELS):
        make_model(out_dir, spec, seed=1000 + i)


if __name__ == "__main__":
    main()
