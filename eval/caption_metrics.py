"""COCO caption metrics exactly as the leaderboard computes them, and results-file validation.

Why pycocoevalcap and not our own code: the published numbers (BLEU, METEOR, ROUGE-L, CIDEr)
depend on the Stanford PTB tokenizer (lower-casing, punctuation removal) and on the METEOR jar;
re-implementing them would give numbers that are close but not the leaderboard's. So
:func:`evaluate_captions` tokenises references and predictions with pycocoevalcap's
``PTBTokenizer`` and runs its scorers (Java is required for the tokenizer and METEOR).

SPICE runs only where its Stanford CoreNLP 3.6.0 jars are already in pycocoevalcap's
``spice/lib`` folder: pycocoevalcap would otherwise download them from nlp.stanford.edu on
first use, which an offline machine cannot do; the reason is reported under ``"skipped"``.

The results file (``[{"image_id": int, "caption": str}, ...]``) is read and checked by
:func:`vln_clip.datasets.results.read_caption_results`: every image of the captions file that
has references must be predicted exactly once, and the offending entry is named otherwise.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Mapping

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.spice import get_stanford_models as spice_models
from pycocoevalcap.spice.spice import Spice
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from vln_clip.datasets.coco import read_captions
from vln_clip.datasets.results import read_caption_results
from vln_clip.errors import DataError, MissingResourceError

#: The metric keys pycocoevalcap reports (SPICE added where it can run).
CAPTION_METRICS: tuple[str, ...] = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")


def spice_unavailable() -> str | None:
    """Why SPICE cannot run here, or None when it can (Java and the CoreNLP jars present)."""
    if shutil.which("java") is None:
        return "SPICE needs Java (not on PATH)"
    jar = Path(spice_models.SPICEDIR) / spice_models.SPICELIB / f"{spice_models.JAR}.jar"
    if not jar.exists():
        return (f"SPICE needs the Stanford CoreNLP 3.6.0 jars in {jar.parent} (pycocoevalcap downloads "
                f"{spice_models.CORENLP}.zip from nlp.stanford.edu on first use; this machine is offline): "
                f"put {jar.name} and {spice_models.JAR}-models.jar there to enable it")
    return None


def require_java() -> None:
    if shutil.which("java") is None:
        raise MissingResourceError("caption metrics need Java for the PTB tokenizer and METEOR "
                                   "(pycocoevalcap runs the Stanford jars): install a JRE, e.g. "
                                   "`apt-get install default-jre-headless`")


def score_tokenized(gts: Mapping[Any, list[str]], res: Mapping[Any, list[str]],
                    spice: bool = False) -> dict[str, float]:
    """Run pycocoevalcap's scorers on already PTB-tokenised references and predictions."""
    gts, res = dict(gts), dict(res)
    out: dict[str, float] = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out.update({f"Bleu_{i + 1}": float(b) for i, b in enumerate(bleu)})
    meteor = Meteor()
    try:
        out["METEOR"] = float(meteor.compute_score(gts, res)[0])
    finally:
        del meteor
    out["ROUGE_L"] = float(Rouge().compute_score(gts, res)[0])
    out["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    if spice:
        out["SPICE"] = float(Spice().compute_score(gts, res)[0])
    return out


def evaluate_captions(captions_json: str | os.PathLike[str], preds_json: str | os.PathLike[str]) -> dict[str, Any]:
    """Leaderboard caption metrics of a results file against a COCO captions file.

    Returns the metric values (keys :data:`CAPTION_METRICS`, plus ``SPICE`` where it can run),
    ``n_images`` and ``skipped`` (metric -> reason). Every image of the captions file that has
    references must be predicted exactly once.
    """
    require_java()
    images = [im for im in read_captions(captions_json) if im.captions]
    if not images:
        raise DataError(f"{captions_json}: no image has a reference caption; pass a captions file with annotations")
    preds = read_caption_results(preds_json, [im.image_id for im in images])
    # One tokenizer run (one JVM start) for references and predictions together.
    both = {("ref", im.image_id): [{"caption": c} for c in im.captions] for im in images}
    both.update({("pred", im.image_id): [{"caption": preds[im.image_id]}] for im in images})
    tokens = PTBTokenizer().tokenize(both)
    gts = {im.image_id: tokens[("ref", im.image_id)] for im in images}
    res = {im.image_id: tokens[("pred", im.image_id)] for im in images}
    why = spice_unavailable()
    scores: dict[str, Any] = score_tokenized(gts, res, spice=why is None)
    scores["n_images"] = len(images)
    scores["skipped"] = {} if why is None else {"SPICE": why}
    return scores
