"""Is the synthetic VQA learnable from pixels? A deliberately small probe, not a VQA model.

Two MLPs are trained on the train split and scored with the official VQA accuracy on val
(unseen houses): one sees only the question (bag of words), the other also a 16x16 RGB
thumbnail of the image. If the second beats the first, the answers depend on the image in a
way a learner can pick up from raw pixels, and the gap says by how much; the VQA models of
``vln_clip.vqa`` (CLIP grid features, attention) are expected to do far better than either.
Both use the same seed, data order, width and epochs; targets are the BUTD soft scores over
the train answer vocabulary (:class:`vln_clip.datasets.vqa.AnswerVocab`).
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np
import torch
from PIL import Image

from vln_clip.datasets.vqa import AnswerVocab, read_vqa
from vln_clip.eval.vqa_accuracy import vqa_accuracy

from .vl import VLPaths

THUMB = 16


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def _thumbs(paths: VLPaths, keys: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for k in keys:
        with Image.open(paths.image(k)) as im:
            out[k] = np.asarray(im.convert("RGB").resize((THUMB, THUMB), Image.BOX), dtype=np.float32).ravel() / 255.0
    return out


def probe(vl_dir: str | os.PathLike[str], epochs: int = 40, hidden: int = 512, seed: int = 0,
          train_split: str = "train", eval_split: str = "val") -> dict[str, Any]:
    """VQA accuracy (official, %) on ``eval_split`` of the question-only and the
    question + thumbnail MLP, per answer type, with the training set's sizes."""
    paths = VLPaths.at(vl_dir)
    train = read_vqa(paths.vqa_questions(train_split), paths.vqa_annotations(train_split))
    test = read_vqa(paths.vqa_questions(eval_split), paths.vqa_annotations(eval_split))
    vocab = AnswerVocab.build(train, min_count=1)
    words = sorted({w for it in train for w in _words(it.question)})
    index = {w: i for i, w in enumerate(words)}
    thumbs = _thumbs(paths, sorted({it.image_key for it in train + test}))

    def features(items: list[Any], with_image: bool) -> torch.Tensor:
        bow = np.zeros((len(items), len(words)), dtype=np.float32)
        for r, it in enumerate(items):
            for w in _words(it.question):
                if w in index:
                    bow[r, index[w]] = 1.0
        if not with_image:
            return torch.from_numpy(bow)
        img = np.stack([thumbs[it.image_key] for it in items])
        return torch.from_numpy(np.concatenate([bow, img - 0.5], axis=1))

    targets = torch.from_numpy(vocab.targets(train, "butd"))
    out: dict[str, Any] = {"train_questions": len(train), "eval_questions": len(test), "answers": len(vocab),
                           "epochs": epochs, "hidden": hidden, "seed": seed, "thumbnail": f"{THUMB}x{THUMB} RGB"}
    for name, with_image in (("question_only", False), ("question_and_image", True)):
        torch.manual_seed(seed)
        x, xt = features(train, with_image), features(test, with_image)
        model = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                                    torch.nn.Linear(hidden, len(vocab)))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
        gen = torch.Generator().manual_seed(seed)
        for _epoch in range(epochs):
            model.train()
            for b in torch.randperm(len(x), generator=gen).split(128):
                loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x[b]), targets[b]) * len(vocab)
                opt.zero_grad()
                loss.backward()
                opt.step()
        model.eval()
        with torch.no_grad():
            pred = model(xt).argmax(1).tolist()
        acc = vqa_accuracy([it.answers for it in test], [vocab.answers[p] for p in pred])
        per_type = {t: round(100 * float(acc[[it.answer_type == t for it in test]].mean()), 2)
                    for t in sorted({it.answer_type for it in test})}
        out[name] = {"accuracy": round(100 * float(acc.mean()), 2), "per_answer_type": per_type}
    return out
