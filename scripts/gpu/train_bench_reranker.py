#!/usr/bin/env python3
"""Trains a cross-encoder of the MiniLM-L6 shape on the graded ranking pairs (issue 17), on one GPU, in a
fixed wall-clock budget: a model whose scores spread with relevance, on which the cpu engine's dtypes'
ranking quality means something (the bench's seeded random model's scores for a query's passages differ
by tiny amounts, so any rounding reorders them).

    python3 scripts/gpu/train_bench_reranker.py --base DIR --train train.jsonl.gz --heldout heldout.jsonl \
        --bench bench.jsonl --out /tmp/q17model --parts-out $OUT [--seconds 150] [--parts-dtype F16]

--base: a synthetic minilm-l6 folder (config.json, tokenizer.json; tensors.json or model.safetensors for the
tensor names our loader reads). The model is transformers' BertForSequenceClassification of that config
(hidden 384, 6 layers, 12 heads, FFN 1536, vocab 30522, 512 positions, one label), seeded init (BERT's
0.02; each key projection a copy of its query projection: --match-init), trained with AdamW under bf16
autocast on a pairwise (RankNet) loss over each query's passages (optionally plus an MSE anchor to
8 * label - 4). Prints the loss and the held-out per-query Spearman / NDCG@10 against the labels as it
goes. The defaults are the recipe that learned the task in 150 s on an H200 (docs/cpu-dtypes.md, run 2).

Writes --out (config.json, model.safetensors in float32 with exactly the base's tensor names, the tokenizer
files) and, with --parts-out, model.safetensors (float32, or float16 with --parts-dtype F16, the weights
then rounded to float16 before anything is measured) in parts of at most 16,000,000 bytes plus q17-manifest.json
(SHA-256s, config, training log, held-out metrics, and the bench pairs' logits of the saved model read back
by from_pretrained: in float32 on the GPU and in float64, the reference for the cpu engine).
Every step that can fail does so loudly, before the training where it can.
"""

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reranker_io import ndcg, read_groups, spearman, split_file, write_safetensors  # noqa: E402

PART_BYTES = 16_000_000
SHAPE = {
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "vocab_size": 30522,
    "max_position_embeddings": 512,
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def log(msg):
    print(msg, flush=True)


def expected_tensors(base):
    """{name: shape} our loader reads: from the base folder's weights, else its tensors.json."""
    st = os.path.join(base, "model.safetensors")
    if os.path.exists(st):
        import struct

        with open(st, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            h = json.loads(f.read(n))
        return {k: v["shape"] for k, v in h.items() if k != "__metadata__"}
    with open(os.path.join(base, "tensors.json"), encoding="utf-8") as f:
        return json.load(f)


def tokenize(tok, groups, max_len):
    """Pads every pair to the longest of the set: (ids, type_ids, lengths) as int64 arrays, query-major."""
    pairs = [(q, p) for q, ps, _ in groups for p in ps]
    encs = tok.encode_batch(pairs)
    lengths = np.array([len(e.ids) for e in encs], dtype=np.int64)
    if lengths.max() > max_len:
        raise SystemExit(f"a pair has {lengths.max()} tokens, more than {max_len}: truncation is off")
    ids = np.zeros((len(encs), lengths.max()), dtype=np.int64)
    types = np.zeros_like(ids)
    for i, e in enumerate(encs):
        ids[i, : len(e.ids)] = e.ids
        types[i, : len(e.ids)] = e.type_ids
    labels = np.array([x for _, _, ls in groups for x in ls], dtype=np.float32)
    return ids, types, lengths, labels


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--heldout", required=True)
    ap.add_argument("--bench", required=True, help="the pairs the cpu engine is benchmarked on: their logits go in the manifest")
    ap.add_argument("--out", required=True)
    ap.add_argument("--parts-out")
    ap.add_argument("--seconds", type=float, default=140.0, help="training wall-clock budget (evaluations included)")
    ap.add_argument("--batch-queries", type=int, default=13, help="queries a step (x passages a query = pairs)")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--eval-every", type=float, default=15.0, help="seconds between held-out evaluations")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--mse-weight", type=float, default=0.0, help="weight of an MSE anchor to 8 * label - 4 (default 0: RankNet only)")
    ap.add_argument("--match-init", action=argparse.BooleanOptionalAction, default=True,
                    help="init every layer's key projection as its query projection (layer 0 x3): attention starts out "
                         "matching equal tokens (without it the model memorised its pairs instead: docs/cpu-dtypes.md)")
    ap.add_argument("--parts-dtype", default="F32", choices=["F32", "F16"],
                    help="F16: the weights are rounded to float16 after training (the model everything is measured on) and come back in float16 parts")
    ap.add_argument("--device", default="cuda", help="cuda; cpu only to try the script out where there is no GPU")
    a = ap.parse_args()
    t_start = time.time()

    import torch
    import transformers
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertForSequenceClassification

    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this script trains on the GPU")
    dev = torch.device(a.device)
    gpu = torch.cuda.get_device_name(0) if a.device == "cuda" else "cpu"
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, {gpu}")

    # --- model, checked against the base's config and tensor names before anything long runs
    with open(os.path.join(a.base, "config.json"), encoding="utf-8") as f:
        base_config = json.load(f)
    for k, v in SHAPE.items():
        if base_config.get(k) != v:
            raise SystemExit(f"{a.base}/config.json: {k} is {base_config.get(k)}, not the MiniLM-L6 shape's {v}")
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    cfg = BertConfig.from_pretrained(a.base)  # as from_pretrained reads the folder (model_type, torch_dtype...)
    cfg.num_labels = 1
    # BERT's own init scale: the synthetic config's 0.102 (chosen so random weights give varied logits)
    # saturates attention and slows a run from scratch.
    cfg.initializer_range = 0.02
    cfg.hidden_dropout_prob = 0.0  # a short run from scratch: dropout only slows it
    cfg.attention_probs_dropout_prob = 0.0
    model = BertForSequenceClassification(cfg).to(dev)
    params = dict(model.named_parameters())
    if a.match_init:
        with torch.no_grad():
            for layer in range(cfg.num_hidden_layers):
                q = params[f"bert.encoder.layer.{layer}.attention.self.query.weight"]
                if layer == 0:
                    q.mul_(3.0)
                params[f"bert.encoder.layer.{layer}.attention.self.key.weight"].copy_(q)
    want = expected_tensors(a.base)
    missing = [k for k in want if k not in params]
    extra = [k for k in params if k not in want]
    wrong = [k for k in want if k in params and list(params[k].shape) != list(want[k])]
    if missing or extra or wrong:
        raise SystemExit(f"parameter names differ from our loader's: missing {missing[:5]}, extra {extra[:5]}, shape {wrong[:5]}")
    log(f"model: BertForSequenceClassification, {sum(p.numel() for p in params.values()) / 1e6:.1f} M parameters, "
        f"{len(params)} tensors (the names our loader reads), attention {getattr(model.config, '_attn_implementation', '?')}")

    # --- data
    tok = Tokenizer.from_file(os.path.join(a.base, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=SHAPE["max_position_embeddings"])
    sets = {}
    for name, path in (("train", a.train), ("heldout", a.heldout), ("bench", a.bench)):
        groups = read_groups(path)
        ids, types, lengths, labels = tokenize(tok, groups, SHAPE["max_position_embeddings"])
        per_q = len(groups[0][1])
        sets[name] = dict(ids=torch.from_numpy(ids).to(dev), types=torch.from_numpy(types).to(dev),
                          lengths=lengths, len_t=torch.from_numpy(lengths).to(dev), labels=torch.from_numpy(labels).to(dev), per_q=per_q,
                          queries=len(groups))
        log(f"data {name}: {path}: {len(groups)} queries x {per_q} passages, {lengths.mean():.1f} tokens a pair "
            f"(max {lengths.max()}), labels mean {labels.mean():.3f}")
    tr = sets["train"]
    per_q = tr["per_q"]

    def forward(s, rows, dtype=None):
        """Logit 0 of the pairs `rows` of set s, padded to the longest of them; under autocast to dtype if given."""
        lens = s["len_t"][rows]
        L = int(lens.max())
        mask = (torch.arange(L, device=dev)[None, :] < lens[:, None]).long()
        with torch.autocast(a.device, dtype=dtype) if dtype is not None else contextlib.nullcontext():
            return model(input_ids=s["ids"][rows, :L], token_type_ids=s["types"][rows, :L], attention_mask=mask).logits[:, 0]

    def score(s, dtype=torch.bfloat16, chunk=500):
        out = []
        with torch.no_grad():
            for i in range(0, s["ids"].shape[0], chunk):
                out.append(forward(s, torch.arange(i, min(i + chunk, s["ids"].shape[0]), device=dev), dtype))
        return torch.cat(out).double().cpu().numpy()

    def label_metrics(s, scores):
        lab = s["labels"].double().cpu().numpy().reshape(-1, s["per_q"])
        sc = np.asarray(scores).reshape(-1, s["per_q"])
        rho = [spearman(x, y) for x, y in zip(sc, lab)]
        nd = [ndcg(x, y) for x, y in zip(sc, lab)]
        return {"spearman_mean": float(np.mean(rho)), "spearman_min": float(np.min(rho)), "ndcg10_mean": float(np.mean(nd)),
                "logit_min": float(sc.min()), "logit_max": float(sc.max()), "logit_std_within_query": float(sc.std(axis=1).mean())}

    # --- training, to the wall-clock budget
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01, betas=(0.9, 0.98), eps=1e-6)
    bq = a.batch_queries
    upper = torch.triu(torch.ones(per_q, per_q, dtype=torch.bool, device=dev), 1)
    history = []
    step, seen, loss_n = 0, 0, 0
    loss_sum = torch.zeros((), device=dev)  # summed on the device: no sync a step
    m0 = label_metrics(sets["heldout"], score(sets["heldout"]))
    t0 = time.time()
    next_eval = t0 + a.eval_every
    log(f"start (untrained): held-out Spearman {m0['spearman_mean']:.4f}, NDCG@10 {m0['ndcg10_mean']:.4f}; setup took {t0 - t_start:.1f} s")
    rng = np.random.default_rng(a.seed)
    done = False
    while not done:
        order = rng.permutation(tr["queries"])
        for b in range(0, len(order) - bq + 1, bq):
            elapsed = time.time() - t0
            if elapsed >= a.seconds:
                done = True
                break
            lr = a.lr * min(1.0, (step + 1) / a.warmup) * max(0.02, 1 - elapsed / a.seconds)
            for g in opt.param_groups:
                g["lr"] = lr
            qs = torch.as_tensor(order[b : b + bq], device=dev)
            rows = (qs[:, None] * per_q + torch.arange(per_q, device=dev)[None, :]).reshape(-1)
            s = forward(tr, rows, torch.bfloat16).float().view(bq, per_q)
            y = tr["labels"][rows].view(bq, per_q)
            # RankNet over every pair of a query's passages whose labels differ, weighted by the gap.
            dy = y[:, :, None] - y[:, None, :]
            ds = s[:, :, None] - s[:, None, :]
            w = dy.abs() * upper
            pair_loss = (torch.nn.functional.softplus(-torch.sign(dy) * ds) * w).sum() / w.sum().clamp_min(1e-6)
            loss = pair_loss + a.mse_weight * torch.nn.functional.mse_loss(s, 8 * y - 4)
            if not torch.isfinite(loss):
                raise SystemExit(f"step {step}: loss is {loss.item()} (diverged): lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            seen += rows.numel()
            loss_sum += loss.detach()
            loss_n += 1
            if time.time() >= next_eval:
                model.eval()
                m = label_metrics(sets["heldout"], score(sets["heldout"]))
                model.train()
                row = {"seconds": round(time.time() - t0, 1), "step": step, "pairs_seen": seen, "lr": lr,
                       "loss": loss_sum.item() / max(loss_n, 1), **m}
                history.append(row)
                log(f"{row['seconds']:6.1f} s  step {step:5d}  pairs {seen:8d}  lr {lr:.2e}  loss {row['loss']:.4f}  "
                    f"held-out Spearman {m['spearman_mean']:.4f} (min {m['spearman_min']:.3f})  NDCG@10 {m['ndcg10_mean']:.4f}  "
                    f"logits {m['logit_min']:.2f}..{m['logit_max']:.2f}")
                loss_sum.zero_()
                loss_n = 0
                next_eval = time.time() + a.eval_every
    train_s = time.time() - t0
    log(f"trained {step} steps, {seen} pairs ({seen / (tr['queries'] * per_q):.1f} epochs) in {train_s:.1f} s")

    # --- save: float32, exactly the base's tensor names, in its order
    model.eval()
    if a.parts_dtype == "F16":
        with torch.no_grad():
            for p in params.values():
                p.copy_(p.half().float())
    os.makedirs(a.out, exist_ok=True)
    write_safetensors(os.path.join(a.out, "model.safetensors"),
                      [(k, params[k].detach().float().cpu().numpy()) for k in want])
    config = {k: v for k, v in base_config.items() if not k.startswith("mlx_rerank")}
    config["torch_dtype"] = "float32"
    config["initializer_range"] = cfg.initializer_range
    config["mlx_rerank_trained"] = (f"scripts/gpu/train_bench_reranker.py: graded ranking pairs (src/workload.ts gradedPairs), "
                                    f"{step} steps, {seen} pairs, {train_s:.0f} s, seed {a.seed}")
    with open(os.path.join(a.out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    for name in TOKENIZER_FILES:
        if os.path.exists(os.path.join(a.base, name)):
            shutil.copy(os.path.join(a.base, name), a.out)

    # The parts first: whatever fails below, the trained weights come back.
    manifest = {
        "config": config,
        "args": vars(a),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "gpu": gpu},
        "steps": step, "pairs_seen": seen, "train_seconds": train_s,
        "history": history, "untrained_heldout": m0,
    }
    if a.parts_out:
        os.makedirs(a.parts_out, exist_ok=True)
        src = os.path.join(a.out, "model.safetensors")
        if a.parts_dtype == "F16":
            src = os.path.join(a.out.rstrip("/") + "-f16", "model.safetensors")  # beside --out: one per run
            os.makedirs(os.path.dirname(src), exist_ok=True)
            write_safetensors(src, [(k, params[k].detach().float().cpu().numpy()) for k in want], dtype="F16")
        manifest["weights"] = split_file(src, a.parts_out, PART_BYTES)
        manifest["weights_dtype"] = a.parts_dtype
        log(f"parts: {', '.join(p['name'] for p in manifest['weights']['parts'])} in {a.parts_out}")
    try:
        # Read it back as transformers does; float32 (no TF32) and float64 logits of the bench pairs: the
        # reference our cpu engine's float32 is compared with.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        trained = {n: score(sets[n], None) for n in ("heldout", "bench")}
        model = BertForSequenceClassification.from_pretrained(a.out, dtype=torch.float32).to(dev).eval()
        back = {n: score(sets[n], None) for n in ("heldout", "bench")}
        diff = max(float(np.abs(trained[n] - back[n]).max()) for n in trained)
        log(f"saved {a.out}; from_pretrained reads it back: max |logit - the trained model's| {diff:.2e}"
            + ("" if diff < 1e-3 else "  WARNING: the saved file does not give the trained model's logits"))
        manifest["final"] = {n: label_metrics(sets[n], back[n]) for n in back}
        manifest["bench_logits_float32"] = [float(x) for x in back["bench"]]
        for n, m in manifest["final"].items():
            log(f"final {n} (float32): Spearman vs labels {m['spearman_mean']:.4f} (min {m['spearman_min']:.3f}), NDCG@10 "
                f"{m['ndcg10_mean']:.4f}, logits {m['logit_min']:.2f}..{m['logit_max']:.2f}, std within a query {m['logit_std_within_query']:.3f}")
        model = model.double()
        bench64 = score(sets["bench"], None)
        manifest["bench_logits_float64"] = [float(x) for x in bench64]
        log(f"float64 vs float32 on the bench pairs: max {np.abs(bench64 - back['bench']).max():.2e}")
    except Exception:  # noqa: BLE001 - reported, and the manifest is still written
        import traceback

        log("READ-BACK FAILED (the parts and the training log are still written):\n" + traceback.format_exc())
    if a.parts_out:
        with open(os.path.join(a.parts_out, "q17-manifest.json"), "w", encoding="utf-8") as f:
            json.dump(manifest, f)
        log(f"manifest: {a.parts_out}/q17-manifest.json")
    log(f"total {time.time() - t_start:.1f} s")


if __name__ == "__main__":
    main()
