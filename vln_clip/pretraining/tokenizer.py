"""WordPiece text tokenizer for the single-stream transformer (BERT's vocabulary layout).

The vocabulary comes from a local ``vocab.txt`` (for instance the one next to a Hugging Face
BERT checkpoint, so that ``--text-init`` and the token ids agree) or is learnt on the
pre-training corpus (:func:`learn_pieces`: the ``tokenizers`` normaliser and pre-tokeniser, and
a merge loop of our own that, unlike the library's trainer, gives one vocabulary per corpus). Either way the run keeps its own copy
(``RUN/vocab.txt``) and every later step (resume, fine-tuning) loads that file, so a model and
its token ids never drift apart.
"""

from __future__ import annotations

import heapq
import os
import shutil
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from vln_clip.errors import DataError
from vln_clip.io import atomic_path

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
VOCAB_FILE = "vocab.txt"


class WordPieceTokenizer:
    """Lower-cased BERT WordPiece tokenization with word ids (for whole-word masking).

    ``encode(texts, max_len)`` returns per text the token ids (``[CLS] ... [SEP]``, truncated to
    ``max_len``) and the index of the word each token belongs to (``-1`` for the specials), which
    is what masking "15% of the words" needs.
    """

    def __init__(self, vocab_path: str | os.PathLike[str], lowercase: bool = True) -> None:
        from tokenizers import BertWordPieceTokenizer

        self.vocab_path = Path(vocab_path)
        if not self.vocab_path.is_file():
            raise DataError(f"{self.vocab_path}: no such WordPiece vocabulary; pass a BERT vocab.txt "
                            "(--vocab) or leave it out to train one on the corpus")
        tokens = self.vocab_path.read_text(encoding="utf-8").splitlines()
        missing = [t for t in SPECIAL_TOKENS if t not in tokens]
        if missing:
            raise DataError(f"{self.vocab_path}: vocabulary lacks the special tokens {missing}; a BERT "
                            f"vocab.txt has one token per line including {', '.join(SPECIAL_TOKENS)}")
        self.lowercase = lowercase
        self._tok = BertWordPieceTokenizer(str(self.vocab_path), lowercase=lowercase)
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
            self._tok.token_to_id(t) for t in SPECIAL_TOKENS)
        self.special_ids = frozenset((self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id))

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, texts: Sequence[str], max_len: int) -> list[tuple[list[int], list[int]]]:
        if max_len < 3:
            raise DataError(f"max_len must leave room for [CLS], a token and [SEP], got {max_len}")
        self._tok.enable_truncation(max_len)
        out = []
        for enc in self._tok.encode_batch(list(texts)):
            out.append((list(enc.ids), [-1 if w is None else int(w) for w in enc.word_ids]))
        return out

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids))

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Copy the vocabulary into ``directory/vocab.txt`` (atomically)."""
        dest = Path(directory) / VOCAB_FILE
        if dest.resolve() != self.vocab_path.resolve():
            with atomic_path(dest) as tmp:
                shutil.copyfile(self.vocab_path, tmp)
        return dest


def learn_pieces(texts: Iterable[str], vocab_size: int, min_frequency: int = 2,
                 lowercase: bool = True) -> list[str]:
    """The word pieces (without the specials, sorted) of a WordPiece vocabulary for ``texts``.

    BERT's WordPiece vocabularies are learnt the way the ``tokenizers`` trainer does it: split
    the normalised, pre-tokenised words into characters (continuations prefixed ``##``), then
    repeatedly merge the most frequent adjacent pair until the vocabulary (specials + alphabet
    + merges) has ``vocab_size`` entries or the best pair occurs fewer than ``min_frequency``
    times. Ties go to the pair of the oldest tokens, as in the library (token ids: characters
    sorted, then ``##`` characters as first met, then merges in the order made). Written here
    because the library meets the words in hash-map order, which differs between processes,
    and templated corpora are full of ties (two library runs on the synthetic world differed in
    31 of 1,000 lines); here the words are met in sorted order, so one corpus gives one
    vocabulary. Pair counts are updated incrementally (a heap with lazy deletion), so a merge
    costs only the words that contain the pair.
    """
    from tokenizers import normalizers, pre_tokenizers

    norm, pre = normalizers.BertNormalizer(lowercase=lowercase), pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w, _ in pre.pre_tokenize_str(norm.normalize_str(text)))
    words = [[w[0], *("##" + c for c in w[1:])] for w in sorted(counts)]
    freq = [counts[w] for w in sorted(counts)]
    chars = {p for pieces in words for p in pieces}
    ids = {t: i for i, t in enumerate(sorted(c for c in chars if not c.startswith("##")))}
    for pieces in words:  # "##" characters numbered as first met, words in sorted order
        for p in pieces[1:]:
            ids.setdefault(p, len(ids))
    vocab = set(chars)
    pairs: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for i, pieces in enumerate(words):
        for pair in zip(pieces, pieces[1:]):
            pairs[pair] += freq[i]
            where[pair].add(i)
    def entry(pair: tuple[str, str]) -> tuple[int, int, int, tuple[str, str]]:
        return -pairs[pair], ids[pair[0]], ids[pair[1]], pair

    heap = [entry(pair) for pair in pairs]
    heapq.heapify(heap)
    while len(vocab) + len(SPECIAL_TOKENS) < vocab_size and heap:
        neg, _, _, pair = heapq.heappop(heap)
        if pairs.get(pair, 0) != -neg:
            continue  # stale entry: the count changed since it was pushed
        if -neg < min_frequency:
            break
        a, b = pair
        merged = a + b[2:]  # b is always a continuation ("##...")
        vocab.add(merged)
        ids.setdefault(merged, len(ids))
        touched: set[tuple[str, str]] = set()
        for i in sorted(where.pop(pair)):
            pieces, out, j = words[i], [], 0
            if len(pieces) < 2:
                continue
            for old in zip(pieces, pieces[1:]):
                pairs[old] -= freq[i]
                touched.add(old)
            while j < len(pieces):
                if j + 1 < len(pieces) and pieces[j] == a and pieces[j + 1] == b:
                    out.append(merged)
                    j += 2
                else:
                    out.append(pieces[j])
                    j += 1
            words[i] = out
            for new in zip(out, out[1:]):
                pairs[new] += freq[i]
                where[new].add(i)
                touched.add(new)
        pairs.pop(pair, None)
        for t in touched:
            if pairs.get(t, 0) > 0:
                heapq.heappush(heap, entry(t))
            else:
                pairs.pop(t, None)
    return sorted(vocab - set(SPECIAL_TOKENS))


def train_wordpiece(texts: Iterable[str], out_dir: str | os.PathLike[str], vocab_size: int = 4000,
                    min_frequency: int = 2) -> WordPieceTokenizer:
    """Learn a WordPiece vocabulary on ``texts`` (:func:`learn_pieces`) and write it to
    ``out_dir/vocab.txt``: the specials first, then the pieces sorted.

    Used when no BERT vocabulary is at hand (no BERT download here): the pre-training corpus
    defines the word pieces, and the same corpus always gives the same file.
    """
    pieces = learn_pieces(texts, vocab_size, min_frequency)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / VOCAB_FILE) as dest:
        dest.write_text("\n".join(list(SPECIAL_TOKENS) + pieces) + "\n", encoding="utf-8")
    return WordPieceTokenizer(out_dir / VOCAB_FILE)
