"""CIDEr-D with cached document frequencies, vectorised over a whole batch of candidates.

Why: self-critical training (SCST) scores 5 x B sampled captions per step against the training
references. pycocoevalcap recomputes the document frequencies and every reference's tf-idf
vector on each call and loops over n-grams in Python; here the training references are
"cooked" once (:class:`CiderD`), and each call only counts the candidates' n-grams with numpy
(sorting, ``searchsorted``, ``bincount``), so a batch costs a few array passes.

Definition (matched term by term to pycocoevalcap 1.2's ``cider/cider_scorer.py``, which is
CIDEr-D: clipped counts plus a Gaussian length penalty; the equality is tested to 1e-9 in
``tests/test_cider.py``):

* A caption is split on whitespace; its n-grams for n = 1..4 are counted (term frequency).
* Document frequency ``df(g)`` = number of images whose reference *set* contains n-gram ``g``;
  ``N`` = number of images (reference sets) in the corpus; ``idf(g) = log(N) - log(max(1, df))``
  (an n-gram never seen in the references gets ``log N``).
* Per order n, a caption's vector is ``tf * idf`` over its n-grams of that order, with norm
  ``||v_n||``.
* For a candidate c and a reference r: ``s_n = sum_g min(c_g, r_g) * r_g / (||c_n|| ||r_n||)``
  (the division is skipped when a norm is 0; the sum is 0 then anyway), times the penalty
  ``exp(-delta^2 / (2 sigma^2))`` with sigma = 6.
* **Length quirk kept from pycocoevalcap:** ``delta`` is the difference of the *bigram* counts
  (``max(0, words - 1)``), not of the word counts; it equals the word-count difference whenever
  both captions have at least one word.
* ``CIDEr-D(c) = 10 * mean_n(sum_r s_n(c, r)) / |refs|``; the corpus score is the mean over
  candidates.

pycocoevalcap computes ``df`` from the references passed to ``compute_score``; to reproduce its
numbers exactly, build :class:`CiderD` on the same reference sets (``CiderD(gts)`` and score
every image once). For SCST the corpus is the training references (self-critical.pytorch
does the same), and candidates are scored against one corpus image's references each.

Exactness: n-grams get exact integer ids (no hashing collisions): an n-gram's id is looked up
from the pair (id of its (n-1)-gram prefix, id of its last word) in sorted tables built from
the corpus; n-grams of a candidate that the corpus never saw get ids local to the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Mapping, Sequence

import numpy as np

from vln_clip.errors import DataError

#: n-gram orders and the Gaussian length-penalty width of CIDEr-D (Vedantam et al. 2015).
CIDER_N = 4
CIDER_SIGMA = 6.0


@dataclass
class _Grams:
    """The distinct n-grams of a set of sentences, for each order: (sentence, n-gram id, count)."""

    sent: list[np.ndarray]
    gram: list[np.ndarray]
    count: list[np.ndarray]
    bigram_len: np.ndarray  # number of bigrams of each sentence (pycocoevalcap's "length")


def _word_matrix(sentences: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Pad word-id lists to a matrix (pad = -1) and return it with the lengths."""
    lens = np.fromiter((len(s) for s in sentences), dtype=np.int64, count=len(sentences))
    width = max(int(lens.max(initial=0)), 1)
    mat = np.full((len(sentences), width), -1, dtype=np.int64)
    flat = np.fromiter((w for s in sentences for w in s), dtype=np.int64, count=int(lens.sum()))
    rows = np.repeat(np.arange(len(sentences)), lens)
    cols = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    mat[rows, cols] = flat
    return mat, lens


def _windows(mat: np.ndarray, lens: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(sentence index, start position) of every k-gram window that fits in its sentence."""
    width = mat.shape[1]
    if width < k:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.arange(width - k + 1)
    ok = starts[None, :] + k <= lens[:, None]
    sent, pos = np.nonzero(ok)
    return sent.astype(np.int64), pos.astype(np.int64)


def _count(sent: np.ndarray, gram: np.ndarray, n_gram_ids: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (sentence, gram) pairs with their counts, sorted by sentence then gram."""
    key = sent * n_gram_ids + gram
    uniq, counts = np.unique(key, return_counts=True)
    return uniq // n_gram_ids, uniq % n_gram_ids, counts.astype(np.float64)


class CiderD:
    """CIDEr-D against a fixed reference corpus whose document frequencies are computed once.

    ``refs`` maps an image (any hashable key) to its reference captions (strings, already
    tokenised and joined by spaces, e.g. by the PTB tokenizer or lower-cased Karpathy tokens).
    Score candidates with :meth:`scores` (one reference image per candidate, repeated keys
    allowed: 5 samples of one image are 5 entries with the same key).
    """

    def __init__(self, refs: Mapping[Hashable, Sequence[str]], n: int = CIDER_N, sigma: float = CIDER_SIGMA) -> None:
        if not refs:
            raise DataError("CIDEr-D: the reference corpus is empty; pass at least one image with references")
        self.n = n
        self.sigma = sigma
        self.keys = list(refs)
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.vocab: dict[str, int] = {}
        ref_words: list[list[int]] = []
        ref_image: list[int] = []
        for i, key in enumerate(self.keys):
            caps = refs[key]
            if isinstance(caps, str) or len(caps) == 0:
                raise DataError(f"CIDEr-D: image {key!r} needs a non-empty list of reference captions, got {caps!r}")
            for cap in caps:
                ref_words.append([self.vocab.setdefault(w, len(self.vocab)) for w in cap.split()])
                ref_image.append(i)
        self.n_images = len(self.keys)
        self.log_n = float(np.log(float(self.n_images)))
        self.ref_image = np.asarray(ref_image, dtype=np.int64)
        counts = np.bincount(self.ref_image, minlength=self.n_images)
        self.ref_start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.ref_count = counts.astype(np.int64)

        mat, lens = _word_matrix(ref_words)
        # Per order: sorted codes (prefix id * V + last word) of corpus n-grams; an n-gram's id
        # is its rank in that table.
        self._codes: list[np.ndarray] = []
        gram_of_window: list[np.ndarray] = []  # id of each window, for the next order's prefix
        sents, grams = [], []
        v = len(self.vocab)
        for k in range(1, n + 1):
            sent, pos = _windows(mat, lens, k)
            last = mat[sent, pos + k - 1]
            if k == 1:
                code = last
            else:
                prev_sent, prev_pos, prev_ids = gram_of_window[-1]
                # prefix = the (k-1)-gram starting at the same position, found by (sent, pos).
                prefix = prev_ids[_lookup_window(prev_sent, prev_pos, sent, pos, mat.shape[1])]
                code = prefix * v + last
            table, ids = np.unique(code, return_inverse=True)
            self._codes.append(table)
            gram_of_window.append((sent, pos, ids.reshape(-1).astype(np.int64)))
            sents.append(sent)
            grams.append(ids.reshape(-1).astype(np.int64))

        # Document frequency: distinct (image, n-gram) pairs, counted per n-gram.
        self._df_log: list[np.ndarray] = []
        for k in range(n):
            g = len(self._codes[k])
            img_gram = np.unique(self.ref_image[sents[k]] * g + grams[k])
            df = np.bincount(img_gram % g, minlength=g).astype(np.float64)
            # One trailing entry (df 0) serves every n-gram the corpus never saw.
            self._df_log.append(np.log(np.maximum(1.0, np.append(df, 0.0))))

        # Reference tf-idf vectors: sorted keys (ref * G + gram) with values; norms per order.
        n_refs = len(ref_words)
        self.ref_bigrams = np.maximum(lens - 1, 0).astype(np.float64)
        self._ref_keys: list[np.ndarray] = []
        self._ref_vals: list[np.ndarray] = []
        self._ref_norm = np.zeros((n, n_refs))
        for k in range(n):
            g = len(self._codes[k])
            r, gid, tf = _count(sents[k], grams[k], g)
            val = tf * (self.log_n - self._df_log[k][gid])
            self._ref_keys.append(r * g + gid)
            self._ref_vals.append(val)
            self._ref_norm[k] = np.sqrt(np.bincount(r, weights=val * val, minlength=n_refs))

    def _candidate_grams(self, candidates: Sequence[str]) -> _Grams:
        """Count the candidates' n-grams with corpus ids where known, call-local ids otherwise."""
        vocab = self.vocab
        v = len(vocab)
        local: dict[str, int] = {}
        words = []
        for c in candidates:
            row = []
            for w in c.split():
                i = vocab.get(w)
                if i is None:
                    i = v + local.setdefault(w, len(local))
                row.append(i)
            words.append(row)
        mat, lens = _word_matrix(words)
        out = _Grams([], [], [], np.maximum(lens - 1, 0).astype(np.float64))
        prev = None
        for k in range(1, self.n + 1):
            sent, pos = _windows(mat, lens, k)
            last = mat[sent, pos + k - 1]
            table = self._codes[k - 1]
            g = len(table)
            if k == 1:
                known = last < v
                code = np.where(known, last, 0)
            else:
                prev_sent, prev_pos, prev_ids = prev
                prefix = prev_ids[_lookup_window(prev_sent, prev_pos, sent, pos, mat.shape[1])]
                known = (prefix < self._n_known(k - 1)) & (last < v)
                code = np.where(known, prefix * v + last, 0)
            if g == 0:  # the corpus has no n-gram of this order (all references are shorter)
                at_c = np.zeros(len(code), np.int64)
                known &= False
            else:
                at = np.searchsorted(table, code)
                at_c = np.minimum(at, g - 1)
                known &= (at < g) & (table[at_c] == code)
            ids = np.where(known, at_c, -1).astype(np.int64)
            unknown = ~known
            if unknown.any():
                # Unseen n-grams: ids G, G+1, ... by (prefix id, last word), exact within the call.
                if k == 1:
                    ucode = last[unknown]
                else:
                    ucode = prefix[unknown] * (v + len(local)) + last[unknown]
                _, inv = np.unique(ucode, return_inverse=True)
                ids[unknown] = g + inv.reshape(-1)
            prev = (sent, pos, ids)
            n_ids = g + (int(ids.max()) + 1 if len(ids) else 0)
            s, gid, tf = _count(sent, ids, max(n_ids, 1))
            out.sent.append(s)
            out.gram.append(gid)
            out.count.append(tf)
        return out

    def _n_known(self, k: int) -> int:
        """Number of corpus n-grams of order k (ids below it are corpus ids)."""
        return len(self._codes[k - 1])

    def scores(self, candidates: Sequence[str], image_keys: Sequence[Hashable]) -> np.ndarray:
        """CIDEr-D of each candidate against the references of its image (float64 array).

        One call scores a whole SCST batch (e.g. 5 samples x B images, keys repeated).
        """
        if len(candidates) != len(image_keys):
            raise ValueError(f"{len(candidates)} candidates but {len(image_keys)} image keys")
        m = len(candidates)
        if m == 0:
            return np.zeros(0)
        try:
            img = np.fromiter((self.index[k] for k in image_keys), dtype=np.int64, count=m)
        except KeyError as exc:
            raise DataError(f"CIDEr-D: image {exc.args[0]!r} has no references in the corpus this scorer "
                            f"was built on; build CiderD on the references of every scored image") from None
        grams = self._candidate_grams(candidates)
        n_ref = self.ref_count[img]
        pair_start = np.concatenate([[0], np.cumsum(n_ref)[:-1]])
        n_pairs = int(n_ref.sum())
        pair_cand = np.repeat(np.arange(m), n_ref)
        pair_ref = self.ref_start[img][pair_cand] + (np.arange(n_pairs) - pair_start[pair_cand])
        delta = grams.bigram_len[pair_cand] - self.ref_bigrams[pair_ref]
        penalty = np.e ** (-(delta ** 2) / (2 * self.sigma ** 2))
        per_order = np.zeros((self.n, n_pairs))
        for k in range(self.n):
            g = len(self._codes[k])
            s, gid, tf = grams.sent[k], grams.gram[k], grams.count[k]
            idf = self.log_n - self._df_log[k][np.minimum(gid, g)]
            val = tf * idf
            norm_c = np.sqrt(np.bincount(s, weights=val * val, minlength=m))
            # Expand each candidate n-gram over its image's references and look the n-gram up there.
            known = gid < g
            s_k, gid_k, val_k = s[known], gid[known], val[known]
            reps = n_ref[s_k]
            e_cand = np.repeat(s_k, reps)
            e_gram = np.repeat(gid_k, reps)
            e_val = np.repeat(val_k, reps)
            offs = np.arange(int(reps.sum())) - np.repeat(np.cumsum(reps) - reps, reps)
            e_pair = pair_start[e_cand] + offs
            e_ref = pair_ref[e_pair]
            key = e_ref * g + e_gram
            table = self._ref_keys[k]
            at = np.minimum(np.searchsorted(table, key), max(len(table) - 1, 0))
            if len(table):
                r_val = np.where(table[at] == key, self._ref_vals[k][at], 0.0)
            else:
                r_val = np.zeros(len(key))
            dot = np.bincount(e_pair, weights=np.minimum(e_val, r_val) * r_val, minlength=n_pairs)
            denom = norm_c[pair_cand] * self._ref_norm[k][pair_ref]
            sim = np.where(denom != 0, dot / np.where(denom != 0, denom, 1.0), dot)
            per_order[k] = sim * penalty
        summed = np.zeros((m, self.n))
        for k in range(self.n):
            summed[:, k] = np.bincount(pair_cand, weights=per_order[k], minlength=m)
        return summed.mean(axis=1) / n_ref * 10.0

    def corpus_score(self, candidates: Mapping[Hashable, str]) -> tuple[float, np.ndarray]:
        """(mean, per-image scores) for one candidate per image, in the mapping's order."""
        keys = list(candidates)
        s = self.scores([candidates[k] for k in keys], keys)
        return float(s.mean()) if len(s) else 0.0, s


def _lookup_window(prev_sent: np.ndarray, prev_pos: np.ndarray, sent: np.ndarray, pos: np.ndarray,
                   width: int) -> np.ndarray:
    """Index into the (k-1)-gram windows of the window starting at the same (sentence, position).

    Windows are enumerated in (sentence, position) order, so their flat keys are sorted.
    """
    prev_key = prev_sent * width + prev_pos
    return np.searchsorted(prev_key, sent * width + pos)
