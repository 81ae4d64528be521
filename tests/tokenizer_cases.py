"""Shared inputs for the tokenizer tests: the real corpora in ../shared/data and hand-written hard cases."""

import csv
import functools
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(ROOT, "..", "shared", "data")
SPM_V3 = os.path.join(SHARED_DATA, "vocab", "deberta-v3", "spm.model")
GPT2_DIR = os.path.join(SHARED_DATA, "vocab", "gpt2")

# Strings that have broken tokenizers before: normalisation (accents precomposed and combining,
# fullwidth, ligatures, compatibility forms), byte fallback (emoji, rare CJK, private use), invisible
# characters (zero-width space / joiner, BOM, soft hyphen), whitespace of every kind, empties, very
# long words, digits, and special tokens written in the text.
HARD_CASES = [
    "",
    " ",
    "   ",
    "\t",
    "\n\n",
    "a",
    "Hello world",
    " Hello world",
    "Hello world ",
    "  leading and trailing  ",
    "repeated    spaces   between  words",
    "tabs\tand\nnewlines\r\nmixed \t \n here",
    "café naïve résumé Ångström Ầ ệ",
    "cafe\u0301 nai\u0308ve (combining marks)",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３ ！",
    "ﬁne ﬂour … ½ ² ㎞ Ⅻ",
    "emoji 😀👍🏽 👨‍👩‍👧 🇫🇷 ❤️",
    "中文字符和日本語のテキスト 한국어",
    "𠜎𠜱𠝹 rare CJK extension B",
    "zero\u200bwidth\u200cjoiner\u200dtest\ufeffbom",
    "soft\u00adhyphen and nbsp\u00a0here",
    "Supercalifragilisticexpialidocious" * 8,
    "x" * 300,
    "1234567890 3.14159 1,000,000 2026-11-22",
    "mixedCASE and ALLCAPS and snake_case_words",
    "punctuation!!! ??? ... --- ((()))",
    "URLs https://example.com/a?b=c&d=e#frag and emails a.b@c.org",
    "Ελληνικά Русский العربية עברית हिन्दी ไทย",
    "private use \ue000 and control \x07 chars",
    "Don't you'll we've I'm it's",
    "[CLS] [SEP] [MASK] [PAD] [UNK] written in the text",
    "a[MASK]b [MASK]c d[MASK] [MASK]",
    "The capital of France is [MASK].",
    "[MASK]",
    " [SEP] ",
]

PAIR_CASES = [
    ("Who wrote it?", "It was written by a person whose name is not known."),
    ("", "only the second"),
    ("only the first", ""),
    ("emoji 😀 here", "café  naïve\ttabs"),
    ("a " * 40, "b " * 15),
    ("short", "a much longer second sentence with many many words in it, really quite long"),
]


def data_available():
    return os.path.isdir(SHARED_DATA)


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


@functools.lru_cache(maxsize=None)
def sst2_dev():
    path = os.path.join(SHARED_DATA, "sentiment", "SST-2", "dev.tsv")
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r[0] for r in rows[1:]]


@functools.lru_cache(maxsize=None)
def sst2_train(n):
    path = os.path.join(SHARED_DATA, "sentiment", "SST-2", "train.tsv")
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r[0] for r in rows[1 : n + 1]]


@functools.lru_cache(maxsize=None)
def xquad():
    """(contexts, questions) of XQuAD English; contexts once each, in file order."""
    data = json.loads(_read(os.path.join(SHARED_DATA, "qa", "xquad", "xquad.en.json")))
    contexts, questions = [], []
    for article in data["data"]:
        for para in article["paragraphs"]:
            contexts.append(para["context"])
            questions.extend(qa["question"] for qa in para["qas"])
    return contexts, questions


@functools.lru_cache(maxsize=None)
def wnut17():
    """Sentences of all three WNUT-17 files, tokens joined by one space."""
    out = []
    for name in ("wnut17train.conll", "emerging.dev.conll", "emerging.test.annotated"):
        words = []
        for line in _read(os.path.join(SHARED_DATA, "ner", "wnut17", name)).split("\n"):
            if not line.strip():
                if words:
                    out.append(" ".join(words))
                words = []
                continue
            words.append(line.split("\t")[0])
        if words:
            out.append(" ".join(words))
    return out


@functools.lru_cache(maxsize=None)
def piqa_goals():
    lines = _read(os.path.join(SHARED_DATA, "mc", "piqa", "valid.jsonl")).splitlines()
    return [json.loads(line)["goal"] for line in lines if line.strip()]


@functools.lru_cache(maxsize=None)
def corpus():
    """Every text of the four corpora: {name: [texts]}."""
    contexts, questions = xquad()
    return {
        "sst2_dev": sst2_dev(),
        "xquad_contexts": contexts,
        "xquad_questions": questions,
        "wnut17": wnut17(),
        "piqa_goals": piqa_goals(),
    }


def all_texts():
    return [t for texts in corpus().values() for t in texts]
