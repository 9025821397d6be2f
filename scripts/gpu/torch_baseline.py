#!/usr/bin/env python3
"""What a user would otherwise run: PyTorch + transformers' BertForSequenceClassification in float16,
as sentence-transformers' CrossEncoder does (tokenize each batch, pad it to its longest pair, run it).

Same model folder and same pairs as `mlx-rerank bench` (a JSONL of {"query", "document"}), timed end to
end (tokenization included) per request of `batch` pairs, one client (sentence-transformers' predict
is synchronous). Runs where PyTorch, transformers and a CUDA GPU are.

Usage: python3 scripts/gpu/torch_baseline.py MODEL_DIR PAIRS_JSONL OUT_JSON [--batch 8,32,128,512]
       [--pairs N] [--warmup 20] [--max-length 512]
"""

import argparse
import json
import statistics
import time

import torch
from transformers import AutoTokenizer, BertForSequenceClassification


def percentile(values, q):
    """Linear interpolation between closest ranks (numpy's default), as the bench report uses."""
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def run(model, tok, pairs, total, batch, max_length, warmup):
    # The requests mlx-rerank bench sends (src/bench/runner.ts requestPairs): `batch` consecutive
    # pairs, cycling over the file, `total` pairs in all.
    requests = [[pairs[(i + k) % len(pairs)] for k in range(min(batch, total - i))] for i in range(0, total, batch)]
    lat, real, slots = [], 0, 0
    for n, req in enumerate(requests[:warmup] + requests):
        t0 = time.perf_counter()
        enc = tok([q for q, _ in req], [d for _, d in req], padding=True, truncation=True,
                  max_length=max_length, return_tensors="pt")
        enc = {k: v.to("cuda", non_blocking=True) for k, v in enc.items()}
        with torch.inference_mode():
            logits = model(**enc).logits.float().cpu()
        dt = time.perf_counter() - t0
        assert logits.shape[0] == len(req)
        if n >= warmup:
            lat.append(dt * 1000)
            real += int(enc["attention_mask"].sum())
            slots += enc["attention_mask"].numel()
    total_s = sum(lat) / 1000
    return {
        "batch": batch,
        "requests": len(lat),
        "pairs": total,
        "pairsPerSec": total / total_s,
        "latMs": {"avg": statistics.fmean(lat), "p50": percentile(lat, 50), "p95": percentile(lat, 95),
                  "p99": percentile(lat, 99)},
        "paddingWastePct": 100 * (1 - real / slots),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("pairs_jsonl")
    ap.add_argument("out_json")
    ap.add_argument("--batch", default="8,32,128,512")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--pairs", type=int, default=0, help="pairs per batch size, cycling (default: the file's)")
    ap.add_argument("--warmup", type=int, default=20,
                    help="untimed requests before each batch size (as mlx-rerank bench's --warmup-requests)")
    args = ap.parse_args()
    with open(args.pairs_jsonl, encoding="utf-8") as f:
        pairs = [(r["query"], r["document"]) for r in map(json.loads, f)]
    tok = AutoTokenizer.from_pretrained(args.model_dir)
    results = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "runs": []}
    for attn in ("sdpa", "eager"):
        model = BertForSequenceClassification.from_pretrained(
            args.model_dir, dtype=torch.float16, attn_implementation=attn).cuda().eval()
        for batch in (int(b) for b in args.batch.split(",")):
            r = run(model, tok, pairs, args.pairs or len(pairs), batch, args.max_length, args.warmup)
            r["attention"] = attn
            results["runs"].append(r)
            print(f"torch fp16 {attn:5s} batch {batch:4d}: {r['pairsPerSec']:9.1f} pairs/s, "
                  f"p50 {r['latMs']['p50']:.2f} ms, p99 {r['latMs']['p99']:.2f} ms, "
                  f"padding {r['paddingWastePct']:.1f}%", flush=True)
        del model
        torch.cuda.empty_cache()
    with open(args.out_json, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
