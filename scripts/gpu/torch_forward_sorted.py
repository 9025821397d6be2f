#!/usr/bin/env python3
"""PyTorch's forward pass alone, at its best: the peer figure of issue 18.

The pairs are tokenized up front (not timed), sorted by length so that each batch pads as little as
possible, and moved to the GPU; then only `model(**batch).logits` is timed, in float16, with each
attention implementation (eager, sdpa) and with torch.compile (dynamic shapes). That is an upper bound
on what any PyTorch service gets from this model and card, not what a user of sentence-transformers
gets end to end (scripts/gpu/torch_families.py measures that).

    python3 scripts/gpu/torch_forward_sorted.py MODEL_DIR PAIRS_JSONL OUT_JSON [--pairs 16384]
            [--batch 32,512] [--modes eager,sdpa,compile]
"""
import argparse
import json
import time

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def read_pairs(path, n):
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [(rows[i % len(rows)]["query"], rows[i % len(rows)]["document"]) for i in range(n)]


def sorted_batches(tok, pairs, batch, max_length):
    """Batches of pairs of like length, padded to their longest, on the GPU; and the padding share."""
    enc = tok([q for q, _ in pairs], [d for _, d in pairs], truncation=True, max_length=max_length)
    order = sorted(range(len(pairs)), key=lambda i: len(enc["input_ids"][i]))
    batches, real, slots = [], 0, 0
    for i in range(0, len(order), batch):
        idx = order[i:i + batch]
        feats = [{k: enc[k][j] for k in enc.keys()} for j in idx]
        padded = tok.pad(feats, return_tensors="pt")
        real += int(padded["attention_mask"].sum())
        slots += padded["attention_mask"].numel()
        batches.append({k: v.to("cuda") for k, v in padded.items()})
    return batches, 100 * (1 - real / slots), real / len(pairs)


def time_forward(fn, batches, rounds=3):
    with torch.inference_mode():
        for b in batches[:3]:
            fn(**b)
        torch.cuda.synchronize()
        best = float("inf")
        for _ in range(rounds):
            t0 = time.perf_counter()
            for b in batches:
                fn(**b).logits.float()
            torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("pairs_jsonl")
    ap.add_argument("out_json")
    ap.add_argument("--pairs", type=int, default=16384)
    ap.add_argument("--batch", default="32,512")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--modes", default="eager,sdpa,compile")
    args = ap.parse_args()
    pairs = read_pairs(args.pairs_jsonl, args.pairs)
    tok = AutoTokenizer.from_pretrained(args.model_dir)
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "pairs": len(pairs), "runs": []}
    for mode in args.modes.split(","):
        attn = "sdpa" if mode == "compile" else mode
        model = AutoModelForSequenceClassification.from_pretrained(
            args.model_dir, dtype=torch.float16, attn_implementation=attn).cuda().eval()
        fn = torch.compile(model, dynamic=True) if mode == "compile" else model
        for b in [int(x) for x in args.batch.split(",")]:
            batches, padding, tokens = sorted_batches(tok, pairs, b, args.max_length)
            t0 = time.perf_counter()
            s = time_forward(fn, batches)
            run = {"mode": mode, "batch": b, "pairsPerSec": len(pairs) / s, "msPerBatch": 1000 * s / len(batches),
                   "paddingPct": padding, "tokensPerPair": tokens, "wallSeconds": time.perf_counter() - t0}
            out["runs"].append(run)
            print(f"torch forward-only fp16 {mode:7s} batch {b:4d}: {run['pairsPerSec']:9.1f} pairs/s, "
                  f"{run['msPerBatch']:.3f} ms a batch, padding {padding:.1f}% (length-sorted), "
                  f"{tokens:.1f} tokens a pair", flush=True)
        del model, fn
        torch.cuda.empty_cache()
    with open(args.out_json, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
