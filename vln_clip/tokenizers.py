"""Instruction tokenizers and vocabularies.

* R2R (EnvDrop's recipe): lower-case, split on non-word runs, punctuation runs become single
  characters (except runs of dots, kept whole), vocabulary = train words seen at least 5
  times plus the special tokens.
* RxR: English, Hindi and Telugu. stanza's tokenizer when its models are on disk
  (``VLN_CLIP_STANZA_DIR`` or ``~/stanza_resources``), otherwise a Unicode-aware rule
  tokenizer that keeps combining marks (Devanagari/Telugu vowel signs, viramas, nuktas,
  anusvara) inside their words instead of splitting at them like ``\\W+`` does.
"""

from __future__ import annotations

import json
import os
import re
import string
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from .io import atomic_path

PAD, UNK, EOS, BOS = "<PAD>", "<UNK>", "<EOS>", "<BOS>"
SPECIALS = (PAD, UNK, EOS, BOS)
_R2R_SPLIT = re.compile(r"(\W+)")


def r2r_tokenize(sentence: str) -> list[str]:
    """EnvDrop's R2R tokenization."""
    toks: list[str] = []
    for word in (w.strip().lower() for w in _R2R_SPLIT.split(sentence.strip())):
        if not word:
            continue
        if all(c in string.punctuation for c in word) and not all(c == "." for c in word):
            toks.extend(word)
        else:
            toks.append(word)
    return toks


def _is_word_char(ch: str) -> bool:
    cat = unicodedata.category(ch)
    # Letters, numbers and every mark (Mn, Mc, Me): a Telugu vowel sign is category Mc and
    # must stay inside its word.
    return cat[0] in ("L", "N", "M") or ch in ("_", "\u200c", "\u200d")


def unicode_tokenize(sentence: str) -> list[str]:
    """Script-agnostic tokenizer: words are runs of letters, digits and combining marks.

    Punctuation (including the Devanagari danda) becomes separate tokens; whitespace splits.
    Text is NFC-normalized and lower-cased (a no-op for Indic scripts).
    """
    text = unicodedata.normalize("NFC", sentence).lower()
    toks: list[str] = []
    word: list[str] = []
    for ch in text:
        if _is_word_char(ch):
            word.append(ch)
            continue
        if word:
            toks.append("".join(word))
            word = []
        if not ch.isspace():
            toks.append(ch)
    if word:
        toks.append("".join(word))
    return toks


def stanza_dir() -> Path | None:
    """A local stanza model directory, if one exists (stanza never downloads here)."""
    for cand in (os.environ.get("VLN_CLIP_STANZA_DIR"), os.environ.get("STANZA_RESOURCES_DIR"),
                 str(Path.home() / "stanza_resources")):
        if cand and Path(cand).is_dir():
            return Path(cand)
    return None


class StanzaTokenizer:
    """stanza's tokenize processor from a local model directory, per language."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self._pipes: dict[str, object] = {}

    def available(self, lang: str) -> bool:
        return (self.model_dir / lang / "tokenize").is_dir()

    def __call__(self, sentence: str, lang: str) -> list[str]:
        pipe = self._pipes.get(lang)
        if pipe is None:
            import stanza  # optional extra: pip install vln-clip[stanza]

            pipe = stanza.Pipeline(lang=lang, dir=str(self.model_dir), processors="tokenize",
                                   download_method=None, verbose=False)
            self._pipes[lang] = pipe
        doc = pipe(sentence)  # type: ignore[operator]
        return [t.text.lower() for s in doc.sentences for t in s.tokens]


def tokenize(sentence: str, language: str = "en", dataset: str = "r2r") -> list[str]:
    """The tokenizer a dataset uses: R2R's for R2R/R4R, stanza or the Unicode fallback for RxR."""
    if dataset != "rxr":
        return r2r_tokenize(sentence)
    model_dir = stanza_dir()
    if model_dir is not None:
        try:
            tok = _stanza_cache.setdefault(str(model_dir), StanzaTokenizer(model_dir))
            if tok.available(language):
                return tok(sentence, language)
        except ImportError:
            pass
    return unicode_tokenize(sentence)


_stanza_cache: dict[str, StanzaTokenizer] = {}


class Vocab:
    """Word <-> index map with EnvDrop's special tokens first (PAD = 0)."""

    def __init__(self, words: Sequence[str]) -> None:
        self.itos: list[str] = list(SPECIALS) + [w for w in words if w not in SPECIALS]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def build(cls, sentences: Iterable[list[str]], min_count: int = 5) -> "Vocab":
        counts: Counter[str] = Counter()
        for toks in sentences:
            counts.update(toks)
        return cls(sorted(w for w, c in counts.items() if c >= min_count))

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def pad(self) -> int:
        return self.stoi[PAD]

    @property
    def unk(self) -> int:
        return self.stoi[UNK]

    @property
    def eos(self) -> int:
        return self.stoi[EOS]

    @property
    def bos(self) -> int:
        return self.stoi[BOS]

    def encode(self, tokens: Sequence[str], max_len: int) -> list[int]:
        """BOS + words (truncated) + EOS, at most ``max_len`` ids (no padding)."""
        ids = [self.stoi.get(t, self.unk) for t in tokens][: max(0, max_len - 2)]
        return [self.bos] + ids + [self.eos]

    def decode(self, ids: Iterable[int]) -> list[str]:
        out = []
        for i in ids:
            w = self.itos[int(i)] if 0 <= int(i) < len(self.itos) else UNK
            if w == EOS:
                break
            if w not in (PAD, BOS):
                out.append(w)
        return out

    def save(self, path: str | os.PathLike[str]) -> None:
        with atomic_path(path) as tmp:
            Path(tmp).write_text("\n".join(self.itos) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Vocab":
        words = [w for w in Path(path).read_text(encoding="utf-8").split("\n") if w]
        return cls(words)

    def to_json(self) -> str:
        return json.dumps(self.itos, ensure_ascii=False)
