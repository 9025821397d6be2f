#!/usr/bin/env python3
"""Golden files for the tokenizers of the families after BERT, with the real file structure:

- unigram/: a SentencePiece Unigram model trained here (nmt_nfkc normalisation, as XLM-RoBERTa's), laid out
  as an XLM-RoBERTa Hub repository: sentencepiece.bpe.model, the tokenizer.json that transformers' (4.x)
  XLMRobertaConverter builds from it (Precompiled charsmap + Replace normaliser, Metaspace pre-tokenizer,
  Unigram model with fairseq's id offset, `<s> A </s></s> B </s>` template), tokenizer_config.json and
  special_tokens_map.json.
- bpe/: a byte-level BPE trained here with `tokenizers` in ModernBERT's configuration (ByteLevel
  pre-tokenizer with its split regex, no normaliser, specials appended after the merges, `[CLS] A [SEP] B
  [SEP]` template).

Goldens (golden-unigram.json.gz, golden-bpe.json.gz): the same case generator as make_tokenizer.py (its
hostile-text categories, truncation at 32/128/512 with longest_first and only_second) plus multilingual
text, >= 3,000 pairs. `ids`/`typeIds` come from the Python fast tokenizer as sentence-transformers 6 loads
it (AutoTokenizer on the folder, batch call). transformers 5 rebuilds an XLM-RoBERTa tokenizer's normaliser
and pre-tokenizer instead of reading tokenizer.json as written; where the `tokenizers` library reading the
file as written gives other ids, the case also has `fileIds` (the file's own reading), and the golden
counts them.

Usage: python3 scripts/golden/make_family_tokenizers.py VOCAB_UNCASED_TXT OUT_DIR
(committed output: test/fixtures/families/tokenizer, made from test/fixtures/tokenizer/vocab-uncased.txt)
"""

import gzip
import json
import os
import random
import shutil
import sys
import tempfile

import sentencepiece as spm
import tokenizers
import transformers
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tokenizer import EDGE_TEXTS, TextGen, cased_vocab, cases, load_vocab  # noqa: E402

MULTILINGUAL = [
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Le renard brun rapide saute par-dessus le chien paresseux à Noël.",
    "El rápido zorro marrón salta sobre el perro perezoso, ¿verdad?",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "敏捷的棕色狐狸跳过了懒狗。人工智能正在改变世界。",
    "素早い茶色の狐がのろまな犬を飛び越える。検索の再ランキング。",
    "빠른 갈색 여우가 게으른 개를 뛰어넘습니다.",
    "الثعلب البني السريع يقفز فوق الكلب الكسول.",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.",
    "Hızlı kahverengi tilki tembel köpeğin üzerinden atlar.",
    "Szybki brązowy lis przeskakuje nad leniwym psem.",
    "Con cáo nâu nhanh nhẹn nhảy qua con chó lười.",
    "สุนัขจิ้งจอกสีน้ำตาลกระโดดข้ามสุนัขขี้เกียจ",
    "השועל החום המהיר קופץ מעל הכלב העצלן.",
]


def corpus(gen, rng, lines=20000):
    out = [gen.text(3, 60, 0.1) for _ in range(lines)]
    for _ in range(40):
        out.extend(MULTILINGUAL)
        out.extend(t for t in EDGE_TEXTS if t.strip())
    rng.shuffle(out)
    return out


# --- Unigram (XLM-RoBERTa) -------------------------------------------------------------------------


def train_unigram(lines, work):
    prefix = os.path.join(work, "spm")
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=prefix, vocab_size=4000,
                                   model_type="unigram", normalization_rule_name="nmt_nfkc",
                                   character_coverage=0.9995, num_threads=1, shuffle_input_sentence=False,
                                   max_sentencepiece_length=16)
    return prefix + ".model"


def xlmr_converter_tokenizer(spm_path):
    """What transformers 4.x's XLMRobertaConverter (convert_slow_tokenizer.py) builds, which is what
    XLM-RoBERTa repositories on the Hub ship as tokenizer.json (e.g. BAAI/bge-reranker-v2-m3)."""
    from sentencepiece import sentencepiece_model_pb2 as pb2

    proto = pb2.ModelProto()
    with open(spm_path, "rb") as f:
        proto.ParseFromString(f.read())
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(p.piece, p.score) for p in proto.pieces[3:]]
    vocab += [("<mask>", 0.0)]
    tok = tokenizers.Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([
        normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False)
                            for t in ("<s>", "<pad>", "</s>", "<unk>")])
    tok.add_special_tokens([tokenizers.AddedToken("<mask>", special=True, normalized=False, lstrip=True)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)])
    return tok


def unigram_folder(spm_path, folder):
    os.makedirs(folder, exist_ok=True)
    shutil.copy(spm_path, os.path.join(folder, "sentencepiece.bpe.model"))
    xlmr_converter_tokenizer(spm_path).save(os.path.join(folder, "tokenizer.json"))
    specials = {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
                "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"}
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 8192, **specials}, f, indent=2)
    with open(os.path.join(folder, "special_tokens_map.json"), "w") as f:
        json.dump(specials, f, indent=2)


# --- byte-level BPE (ModernBERT) ----------------------------------------------------------------------


def bpe_folder(lines, folder):
    os.makedirs(folder, exist_ok=True)
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=3000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>", "<|padding|>"], show_progress=False)
    tok.train_from_iterator(lines, trainer=trainer)
    # ModernBERT keeps OLMo's added (non-special) tokens and appends BERT's specials after the merges.
    tok.add_tokens([tokenizers.AddedToken("|||EMAIL_ADDRESS|||", normalized=True),
                    tokenizers.AddedToken("|||PHONE_NUMBER|||", normalized=True)])
    tok.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False)
                            for t in ("[UNK]", "[CLS]", "[SEP]", "[PAD]")])
    tok.add_special_tokens([tokenizers.AddedToken("[MASK]", special=True, normalized=False, lstrip=True)])
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:0 [SEP]:0",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.save(os.path.join(folder, "tokenizer.json"))
    specials = {"cls_token": "[CLS]", "sep_token": "[SEP]", "unk_token": "[UNK]", "pad_token": "[PAD]",
                "mask_token": "[MASK]"}
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 8192,
                   "clean_up_tokenization_spaces": True, **specials}, f, indent=2)
    with open(os.path.join(folder, "special_tokens_map.json"), "w") as f:
        json.dump(specials, f, indent=2)


# --- goldens -----------------------------------------------------------------------------------------


def golden(name, folder, pairs, out_dir):
    tok = AutoTokenizer.from_pretrained(folder)
    raw = tokenizers.Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    records, file_differs, errors = [], 0, 0
    for q, d, max_len, trunc in pairs:
        rec = {"q": q, "d": d, "maxLength": max_len, "truncation": trunc}
        try:
            enc = tok([q], [d], truncation=trunc, max_length=max_len, return_token_type_ids=True)
            rec["ids"] = list(enc["input_ids"][0])
            rec["typeIds"] = list(enc["token_type_ids"][0])
        except Exception as err:
            rec["error"] = type(err).__name__ + ": " + str(err)[:200]
            errors += 1
        raw.enable_truncation(max_len, strategy=trunc)
        try:
            r = raw.encode(q, d)
            if rec.get("ids") != r.ids:
                rec["fileIds"] = r.ids
                file_differs += 1
        except Exception as err:
            if "ids" in rec:
                rec["fileError"] = type(err).__name__ + ": " + str(err)[:200]
                file_differs += 1
        records.append(rec)
    out = {
        "tokenizer": name,
        "reference": f"transformers {transformers.__version__} {type(tok).__name__} via AutoTokenizer (batch "
        f"call); fileIds: tokenizers {tokenizers.__version__} reading tokenizer.json as written",
        "transformersNormalizer": json.loads(tok.backend_tokenizer.to_str()).get("normalizer")
        if hasattr(tok, "backend_tokenizer") else None,
        "transformersPreTokenizer": json.loads(tok.backend_tokenizer.to_str()).get("pre_tokenizer")
        if hasattr(tok, "backend_tokenizer") else None,
        "fileDiffers": file_differs,
        "cases": records,
    }
    with gzip.open(os.path.join(out_dir, f"golden-{name}.json.gz"), "wt", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
    print(f"{name}: {len(records)} cases, {errors} errors, {file_differs} where the file as written differs; "
          f"{type(tok).__name__}")


def main():
    vocab_path, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(7)
    gen = TextGen(cased_vocab(load_vocab(vocab_path)), rng, True)
    lines = corpus(gen, rng)
    work = tempfile.mkdtemp()
    unigram_folder(train_unigram(lines, work), os.path.join(out_dir, "unigram"))
    bpe_folder(lines, os.path.join(out_dir, "bpe"))
    pairs = cases(gen, rng)
    for _ in range(300):  # multilingual pairs, some long enough to be truncated
        q = rng.choice(MULTILINGUAL)
        d = " ".join(rng.choice(MULTILINGUAL) for _ in range(rng.randint(1, 40)))
        pairs.append((q, d, rng.choice([32, 128, 512]), rng.choice(["longest_first", "only_second"])))
    golden("unigram", os.path.join(out_dir, "unigram"), pairs, out_dir)
    golden("bpe", os.path.join(out_dir, "bpe"), pairs, out_dir)


if __name__ == "__main__":
    main()
