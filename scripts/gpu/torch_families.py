#!/usr/bin/env python3
"""The GPU baseline for the model families (issue 16): what a user runs otherwise, on the same synthetic
model folder and the same pairs as mlx-rerank's bench.

For a model folder written by `mlx-rerank synth --shape xlmr-base|modernbert-base|electra-base --dtype
float16 --pairs N` (config.json, model.safetensors, tokenizer files, pairs.jsonl of {"query", "document"}):

  * sentence-transformers' CrossEncoder.predict in float16, end to end (tokenization, padding each batch to
    its longest pair, forward, activation), pairs/s at each batch size;
  * PyTorch forward only: AutoModelForSequenceClassification in float16 on batches tokenized and moved to
    the GPU beforehand (padded to each batch's longest pair, as CrossEncoder pads), timed with CUDA
    synchronisation: the ceiling of the end-to-end figure.

Warm-up (untimed): two batches of each size first. Prints one line per figure and writes OUT_JSON.

Usage: python3 scripts/gpu/torch_families.py MODEL_DIR OUT_JSON [--pairs-file FILE] [--pairs 4096]
       [--batch 32,256] [--max-length 512]
"""

import argparse
import inspect
import json
import time

import torch
from sentence_transformers import CrossEncoder
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def read_pairs(path, n):
    with open(path, encoding="utf-8") as f:
        pairs = [(r["query"], r["document"]) for r in map(json.loads, filter(str.strip, f))]
    return [pairs[i % len(pairs)] for i in range(n)]


def half(ce):
    """The CrossEncoder's transformers model in float16 (its attribute moved across releases)."""
    inner = getattr(ce, "model", None)
    if isinstance(inner, torch.nn.Module):
        inner.half()
    else:
        ce.half()


def cross_encoder(model_dir, pairs, batches, max_length):
    try:
        ce = CrossEncoder(model_dir, device="cuda", max_length=max_length)
    except TypeError:  # a release without the max_length argument: the tokenizer's model_max_length holds
        ce = CrossEncoder(model_dir, device="cuda")
    half(ce)
    runs = []
    for b in batches:
        ce.predict(pairs[: 2 * b], batch_size=b, show_progress_bar=False)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        scores = ce.predict(pairs, batch_size=b, show_progress_bar=False)
        torch.cuda.synchronize()
        s = time.perf_counter() - t0
        runs.append({"batch": b, "pairs": len(pairs), "seconds": s, "pairsPerSec": len(pairs) / s,
                     "firstScores": [float(x) for x in list(scores[:8])]})
        print(f"sentence-transformers CrossEncoder.predict fp16 batch {b:4d}: {len(pairs) / s:9.1f} pairs/s "
              f"({len(pairs)} pairs, {s:.2f} s)", flush=True)
    del ce
    torch.cuda.empty_cache()
    return runs


def forward_only(model_dir, pairs, batches, max_length):
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float16).cuda().eval()
    attn = getattr(model.config, "_attn_implementation", None)
    accepted = set(inspect.signature(model.forward).parameters)  # ModernBERT takes no token_type_ids
    runs = []
    for b in batches:
        encoded, real, slots = [], 0, 0
        for i in range(0, len(pairs), b):
            chunk = pairs[i:i + b]
            enc = tok([q for q, _ in chunk], [d for _, d in chunk], padding=True, truncation=True,
                      max_length=max_length, return_tensors="pt")
            real += int(enc["attention_mask"].sum())
            slots += enc["attention_mask"].numel()
            encoded.append({k: v.to("cuda") for k, v in enc.items() if k in accepted})
        with torch.inference_mode():
            for enc in encoded[:2]:
                model(**enc)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for enc in encoded:
                model(**enc).logits.float()
            torch.cuda.synchronize()
        s = time.perf_counter() - t0
        runs.append({"batch": b, "pairs": len(pairs), "seconds": s, "pairsPerSec": len(pairs) / s,
                     "tokensPerPair": real / len(pairs), "paddingWastePct": 100 * (1 - real / slots),
                     "attention": attn})
        print(f"PyTorch forward only fp16 ({attn}) batch {b:4d}: {len(pairs) / s:9.1f} pairs/s "
              f"({real / len(pairs):.1f} tokens a pair, padding {100 * (1 - real / slots):.1f}%)", flush=True)
    del model
    torch.cuda.empty_cache()
    return runs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("out_json")
    ap.add_argument("--pairs-file", help="JSONL of {query, document} (default: MODEL_DIR/pairs.jsonl)")
    ap.add_argument("--pairs", type=int, default=4096, help="pairs per batch size, cycling over the file")
    ap.add_argument("--batch", default="32,256")
    ap.add_argument("--max-length", type=int, default=512)
    args = ap.parse_args()
    pairs = read_pairs(args.pairs_file or f"{args.model_dir}/pairs.jsonl", args.pairs)
    batches = [int(b) for b in args.batch.split(",")]
    with open(f"{args.model_dir}/config.json", encoding="utf-8") as f:
        config = json.load(f)
    import sentence_transformers
    import transformers
    results = {
        "model": args.model_dir,
        "modelType": config.get("model_type"),
        "shape": config.get("mlx_rerank_shape"),
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentenceTransformers": sentence_transformers.__version__,
        "maxLength": args.max_length,
        "crossEncoder": cross_encoder(args.model_dir, pairs, batches, args.max_length),
        "forwardOnly": forward_only(args.model_dir, pairs, batches, args.max_length),
    }
    with open(args.out_json, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
