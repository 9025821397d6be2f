"""Tests of reranker_io.py (plain Python + numpy; no torch):  python3 -m unittest scripts/gpu/test_reranker_io.py

The safetensors writer is checked against an independent reader (struct + json here, and the spec's
rules: 8-byte length, JSON header, contiguous little-endian data); split/join by round trip and by a
damaged part; the metrics against hand-computed values and scipy's definition of Spearman (Pearson of
average ranks).
"""

import gzip
import json
import os
import pathlib
import struct
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reranker_io as io  # noqa: E402


class SafetensorsTest(unittest.TestCase):
    def test_writer_layout(self):
        rng = np.random.default_rng(1)
        tensors = [("a.weight", rng.standard_normal((3, 5)).astype(np.float32)), ("b", np.arange(7, dtype=np.float64))]
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "m.safetensors")
            io.write_safetensors(p, tensors)
            raw = pathlib.Path(p).read_bytes()
        n = struct.unpack("<Q", raw[:8])[0]
        self.assertEqual((8 + n) % 8, 0)
        header = json.loads(raw[8 : 8 + n])
        self.assertEqual(header["__metadata__"], {"format": "pt"})
        self.assertEqual(list(k for k in header if k != "__metadata__"), ["a.weight", "b"])
        data = raw[8 + n :]
        self.assertEqual(len(data), (15 + 7) * 4)
        for name, a in tensors:
            h = header[name]
            self.assertEqual(h["dtype"], "F32")
            self.assertEqual(h["shape"], list(a.shape))
            lo, hi = h["data_offsets"]
            got = np.frombuffer(data[lo:hi], dtype="<f4").reshape(a.shape)
            np.testing.assert_array_equal(got, a.astype(np.float32))

    def test_read_back(self):
        a = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "m.safetensors")
            io.write_safetensors(p, [("x", a)])
            np.testing.assert_array_equal(io.read_safetensors(p)["x"], a)


class SplitJoinTest(unittest.TestCase):
    def test_round_trip_and_damage(self):
        data = os.urandom(100_003)
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "w.bin")
            pathlib.Path(src).write_bytes(data)
            parts = os.path.join(d, "parts")
            os.mkdir(parts)
            entry = io.split_file(src, parts, 30_000)
            self.assertEqual([p["size"] for p in entry["parts"]], [30_000, 30_000, 30_000, 10_003])
            self.assertTrue(all(os.path.getsize(os.path.join(parts, p["name"])) <= 30_000 for p in entry["parts"]))
            out = os.path.join(d, "joined.bin")
            io.join_parts(entry, parts, out)
            self.assertEqual(pathlib.Path(out).read_bytes(), data)
            bad = os.path.join(parts, entry["parts"][1]["name"])
            b = bytearray(pathlib.Path(bad).read_bytes())
            b[5] ^= 1
            pathlib.Path(bad).write_bytes(bytes(b))
            with self.assertRaises(io.DataError):
                io.join_parts(entry, parts, out)


class ReadGroupsTest(unittest.TestCase):
    def write(self, d, rows, gz=False):
        p = os.path.join(d, "p.jsonl.gz" if gz else "p.jsonl")
        text = "".join(json.dumps(r) + "\n" for r in rows)
        with gzip.open(p, "wt", encoding="utf-8") if gz else open(p, "w", encoding="utf-8") as f:
            f.write(text)
        return p

    def test_groups(self):
        rows = [{"qid": q, "query": f"q{q}", "passage": f"p{q}{i}", "label": i / 2} for q in range(3) for i in range(3)]
        with tempfile.TemporaryDirectory() as d:
            for gz in (False, True):
                g = io.read_groups(self.write(d, rows, gz))
                self.assertEqual(len(g), 3)
                self.assertEqual(g[1], ("q1", ["p10", "p11", "p12"], [0.0, 0.5, 1.0]))

    def test_bad_input_is_a_data_error(self):
        good = {"qid": 0, "query": "q", "passage": "p", "label": 0.5}
        cases = [
            [good, {"qid": 0, "query": "other", "passage": "p", "label": 0}],
            [good, {"qid": 0, "query": "q", "passage": "p", "label": 2}],
            [good, {"qid": 0, "query": "q", "passage": 3, "label": 0}],
            [good, {"qid": 1, "query": "r", "passage": "p", "label": 0}, {"qid": 1, "query": "r", "passage": "p", "label": 0}],
            [{"qid": 0, "query": "q"}],
        ]
        with tempfile.TemporaryDirectory() as d:
            for rows in cases:
                with self.assertRaises(io.DataError):
                    io.read_groups(self.write(d, rows))
            p = os.path.join(d, "x.jsonl")
            pathlib.Path(p).write_text("not json\n")
            with self.assertRaises(io.DataError):
                io.read_groups(p)


class MetricsTest(unittest.TestCase):
    def test_ranks_ties(self):
        np.testing.assert_array_equal(io.ranks([10, 20, 10, 30]), [1.5, 3, 1.5, 4])

    def test_spearman(self):
        self.assertAlmostEqual(io.spearman([1, 2, 3, 4], [10, 20, 30, 40]), 1.0)
        self.assertAlmostEqual(io.spearman([1, 2, 3, 4], [4, 3, 2, 1]), -1.0)
        # No ties: 1 - 6 sum d^2 / (n (n^2 - 1)); d = (0, 1, -1, 0) -> 1 - 12 / 60.
        self.assertAlmostEqual(io.spearman([1, 2, 3, 4], [1, 3, 2, 4]), 0.8)
        self.assertEqual(io.spearman([1, 1, 1], [1, 2, 3]), 0.0)

    def test_ndcg(self):
        labels = [0.0, 1.0, 0.5]
        self.assertAlmostEqual(io.ndcg([0, 2, 1], labels), 1.0)
        # Order 0, 2, 1: gains 0, 2^0.5 - 1, 1 at discounts 1, 1/log2 3, 1/2.
        g = 2**0.5 - 1
        want = (g / np.log2(3) + 1 / 2) / (1 + g / np.log2(3))
        self.assertAlmostEqual(io.ndcg([3, 1, 2], labels), want)
        self.assertEqual(io.ndcg([1, 2], [0, 0]), 1.0)


if __name__ == "__main__":
    unittest.main()
