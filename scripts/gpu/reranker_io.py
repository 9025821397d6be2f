"""Plain-Python parts of train_bench_reranker.py (no torch: tested here by test_reranker_io.py).

- read_groups: the graded pairs JSONL of scripts/gpu/graded-pairs.ts (gzip or not), checked and grouped by query.
- write_safetensors: float32 tensors in the safetensors layout (8-byte little-endian header length, JSON
  header with dtype / shape / data_offsets, the data), as save_pretrained writes it.
- split_file / join_parts: a file into parts of at most N bytes with SHA-256s, and back (the device's
  files come back 16 MiB at most each).
- spearman / ndcg: per-query ranking metrics (average ranks for ties, as bench/lib/ranking.ts).

Also a command line for this side of the trip:
    python3 scripts/gpu/reranker_io.py join MANIFEST.json OUT_DIR
puts a model folder together from the parts next to MANIFEST.json (config.json from the manifest, the
tokenizer files from --base DIR when given).
"""

import gzip
import hashlib
import json
import os
import shutil
import struct
import sys

import numpy as np


class DataError(Exception):
    """Bad input data: says what was wrong, and where."""


def read_groups(path):
    """Query-grouped graded pairs: a list of (query, [passage...], [label...]), one per qid, in file order."""
    opener = gzip.open if path.endswith(".gz") else open
    groups = []
    last_qid = None
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                qid, query, passage, label = r["qid"], r["query"], r["passage"], float(r["label"])
            except (ValueError, KeyError, TypeError) as e:
                raise DataError(f"{path}:{n}: not a graded pair ({e}): {line[:120]!r}") from e
            if not (isinstance(query, str) and isinstance(passage, str) and 0.0 <= label <= 1.0):
                raise DataError(f"{path}:{n}: query / passage must be strings and label in 0..1")
            if qid != last_qid:
                groups.append((query, [], []))
                last_qid = qid
            elif query != groups[-1][0]:
                raise DataError(f"{path}:{n}: qid {qid} with a different query than its group's")
            groups[-1][1].append(passage)
            groups[-1][2].append(label)
    if not groups:
        raise DataError(f"{path}: no pairs")
    sizes = {len(g[1]) for g in groups}
    if len(sizes) != 1:
        raise DataError(f"{path}: queries have different numbers of passages: {sorted(sizes)}")
    return groups


def write_safetensors(path, tensors, metadata=None, dtype="F32"):
    """tensors: list of (name, numpy array); written as dtype (F32 or F16, rounded to nearest) in that order."""
    header = {"__metadata__": metadata or {"format": "pt"}}
    arrays = []
    offset = 0
    for name, a in tensors:
        a = np.ascontiguousarray(a, dtype={"F32": "<f4", "F16": "<f2"}[dtype])
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        arrays.append(a)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for a in arrays:
            f.write(a.tobytes())


def read_safetensors(path):
    """{name: numpy float32 array} of an F32 safetensors file (for checks)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        if h["dtype"] != "F32":
            raise DataError(f"{path}: {name} is {h['dtype']}, not F32")
        a, b = h["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(h["shape"])
    return out


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def split_file(path, out_dir, part_bytes):
    """Writes path's bytes as out_dir/<name>.partNN (at most part_bytes each); returns the manifest entry."""
    name = os.path.basename(path)
    parts = []
    with open(path, "rb") as f:
        while True:
            chunk = f.read(part_bytes)
            if not chunk:
                break
            part = f"{name}.part{len(parts):02d}"
            with open(os.path.join(out_dir, part), "wb") as g:
                g.write(chunk)
            parts.append({"name": part, "size": len(chunk), "sha256": hashlib.sha256(chunk).hexdigest()})
    return {"name": name, "size": os.path.getsize(path), "sha256": sha256_file(path), "parts": parts}


def join_parts(entry, parts_dir, out_path):
    """Concatenates the parts of a split_file entry, checking every SHA-256 and the size."""
    h = hashlib.sha256()
    size = 0
    with open(out_path, "wb") as g:
        for p in entry["parts"]:
            with open(os.path.join(parts_dir, p["name"]), "rb") as f:
                chunk = f.read()
            if hashlib.sha256(chunk).hexdigest() != p["sha256"]:
                raise DataError(f"{p['name']}: SHA-256 differs from the manifest's (a damaged or missing part)")
            g.write(chunk)
            h.update(chunk)
            size += len(chunk)
    if size != entry["size"] or h.hexdigest() != entry["sha256"]:
        raise DataError(f"{out_path}: joined size / SHA-256 differ from the manifest's")


def ranks(x):
    """Average ranks, 1-based (ties share the mean of their positions)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    r = np.empty(len(x))
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and x[order[j + 1]] == x[order[i]]:
            j += 1
        r[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(a, b):
    """Pearson's r of the average ranks; 0 where either side is constant."""
    ra, rb = ranks(a), ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    d = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / d) if d > 0 else 0.0


def ndcg(scores, labels, k=10):
    """NDCG@k with gain 2^label - 1 (labels 0..1 here), ties in scores broken by position."""
    labels = np.asarray(labels, dtype=np.float64)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")[:k]
    disc = 1 / np.log2(np.arange(2, k + 2))
    dcg = ((2**labels[order] - 1) * disc[: len(order)]).sum()
    ideal = np.sort(labels)[::-1][:k]
    idcg = ((2**ideal - 1) * disc[: len(ideal)]).sum()
    return float(dcg / idcg) if idcg > 0 else 1.0


def _join_cli(argv):
    import argparse

    ap = argparse.ArgumentParser(prog="reranker_io.py join")
    ap.add_argument("manifest")
    ap.add_argument("out_dir")
    ap.add_argument("--base", help="folder with the tokenizer files (tokenizer.json, vocab.txt, ...)")
    a = ap.parse_args(argv)
    with open(a.manifest, encoding="utf-8") as f:
        m = json.load(f)
    os.makedirs(a.out_dir, exist_ok=True)
    join_parts(m["weights"], os.path.dirname(os.path.abspath(a.manifest)), os.path.join(a.out_dir, "model.safetensors"))
    with open(os.path.join(a.out_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(m["config"], f, indent=2)
    if a.base:
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
            if os.path.exists(os.path.join(a.base, name)):
                shutil.copy(os.path.join(a.base, name), a.out_dir)
    print(f"{a.out_dir}: model.safetensors ({m['weights']['size']} bytes, SHA-256 ok), config.json")


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "join":
        sys.exit(__doc__)
    _join_cli(sys.argv[2:])
