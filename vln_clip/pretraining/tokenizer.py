"""WordPiece text tokenizer for the single-stream transformer (BERT's vocabulary layout).

The vocabulary comes from a local ``vocab.txt`` (for instance the one next to a Hugging Face
BERT checkpoint, so that ``--text-init`` and the token ids agree) or is trained on the
pre-training corpus with the ``tokenizers`` library. Either way the run keeps its own copy
(``RUN/vocab.txt``) and every later step (resume, fine-tuning) loads that file, so a model and
its token ids never drift apart.
"""

from __future__ import annotations

import os
import shutil
import tempfile
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


def train_wordpiece(texts: Iterable[str], out_dir: str | os.PathLike[str], vocab_size: int = 4000,
                    min_frequency: int = 2) -> WordPieceTokenizer:
    """Learn a WordPiece vocabulary on ``texts`` and write it to ``out_dir/vocab.txt``.

    Used when no BERT vocabulary is at hand (no BERT download here): the pre-training corpus
    defines the word pieces. The trainer is deterministic for a given corpus order.
    """
    from tokenizers import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer(lowercase=True)
    tok.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=min_frequency,
                            special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        learned = Path(tok.save_model(tmp)[0]).read_text(encoding="utf-8").splitlines()
    # The trainer's token order varies between runs (its alphabet comes out of a hash map), while
    # WordPiece tokenization depends only on the *set* of pieces: the specials first, then the
    # pieces sorted, gives one vocabulary (and one id per piece) per corpus.
    rest = sorted(set(learned) - set(SPECIAL_TOKENS))
    with atomic_path(out_dir / VOCAB_FILE) as dest:
        dest.write_text("\n".join(list(SPECIAL_TOKENS) + rest) + "\n", encoding="utf-8")
    return WordPieceTokenizer(out_dir / VOCAB_FILE)
