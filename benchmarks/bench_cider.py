"""Speed of the cached, vectorised CIDEr-D (vln_clip.eval.cider) against pycocoevalcap per batch.

The SCST use: every step scores 5 samples x B images against their training references.
Side by side, on the same batches:

* ``pycocoevalcap``: ``Cider().compute_score(gts, res)`` once per batch (its document
  frequencies come from the batch's references; it cooks every reference again each call);
* ``CiderD.scores``: one call per batch against a corpus cooked once.

Exactness is checked on the way: a ``CiderD`` built on a batch's own references reproduces
pycocoevalcap's per-batch scores to 1e-9.

    python benchmarks/bench_cider.py [--images 20000] [--batch 50] [--samples 5] [--batches 20]
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np
from pycocoevalcap.cider.cider import Cider

from vln_clip.eval.cider import CiderD


def zipf_sentence(rng: random.Random, words: list[str], weights: list[float], lo: int, hi: int) -> str:
    return " ".join(rng.choices(words, weights, k=rng.randint(lo, hi)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=20000, help="training images (5 references each)")
    ap.add_argument("--vocab", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=50, help="images per SCST batch")
    ap.add_argument("--samples", type=int, default=5, help="sampled captions per image")
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    words = [f"w{i}" for i in range(args.vocab)]
    weights = [1.0 / (i + 1) for i in range(args.vocab)]  # Zipf-like, as caption words are
    corpus = {i: [zipf_sentence(rng, words, weights, 8, 14) for _ in range(5)] for i in range(args.images)}

    t0 = time.perf_counter()
    scorer = CiderD(corpus)
    t_build = time.perf_counter() - t0

    t_ref = t_ours = 0.0
    max_diff = 0.0
    for _ in range(args.batches):
        imgs = rng.sample(range(args.images), args.batch)
        cands = [zipf_sentence(rng, words, weights, 5, 16) for _ in range(args.batch * args.samples)]
        keys = [im for im in imgs for _ in range(args.samples)]
        # pycocoevalcap scores one candidate per "image" id: give each sample its own id.
        gts = {j: corpus[k] for j, k in enumerate(keys)}
        res = {j: [c] for j, c in enumerate(cands)}
        t0 = time.perf_counter()
        _, ref_scores = Cider().compute_score(gts, res)
        t_ref += time.perf_counter() - t0
        t0 = time.perf_counter()
        scorer.scores(cands, keys)
        t_ours += time.perf_counter() - t0
        same_df = CiderD(gts).scores(cands, list(range(len(cands))))
        max_diff = max(max_diff, float(np.max(np.abs(same_df - ref_scores))))
    n = args.batches
    report = {
        "corpus_images": args.images, "candidates_per_batch": args.batch * args.samples, "batches": n,
        "build_corpus_s": round(t_build, 3),
        "pycocoevalcap_ms_per_batch": round(1000 * t_ref / n, 2),
        "ciderd_ms_per_batch": round(1000 * t_ours / n, 2),
        "speedup": round(t_ref / t_ours, 1),
        "max_abs_diff_same_df": max_diff,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
