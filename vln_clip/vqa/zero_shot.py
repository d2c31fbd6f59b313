"""Zero-shot CLIP VQA (the paper's Table 7): answer by image-text similarity alone.

For each question, every candidate answer is written into a text (``"{question} {answer}"``, or
a prompt template such as ``"question: {question} answer: {answer}"``), every text is embedded
by CLIP's text tower, the image by its image tower, and the answer whose text has the highest
cosine similarity with the image wins. The paper reports this as a negative result (close to
chance on VQA v2): CLIP's contrastive pre-training does not teach it to reason about questions.

:func:`zero_shot_answers` takes any model with open_clip's ``encode_image`` / ``encode_text``
interface plus its tokenizer and image transform, so any model object plugs in;
:func:`vln_clip.encoders.load_clip` builds one for a registry CLIP (local weights or, on purpose,
random ones) or for an encoder checkpoint trained in this project (``--encoder PATH.pt``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from vln_clip.datasets.vqa import AnswerVocab, VQAItem, read_vqa
from vln_clip.encoders import load_clip
from vln_clip.errors import DataError
from vln_clip.eval.vqa_accuracy import score_items

DEFAULT_PROMPT = "question: {question} answer: {answer}"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def answer_text(question: str, answer: str, prompt: str | None) -> str:
    """The text scored against the image for one (question, candidate answer) pair."""
    if prompt is None:
        return f"{question} {answer}"
    return prompt.format(question=question, answer=answer)


def check_prompt(prompt: str) -> None:
    """A prompt must contain ``{question}`` and ``{answer}`` and nothing else in braces."""
    try:
        prompt.format(question="q", answer="a")
    except (KeyError, IndexError, ValueError) as exc:
        raise DataError(f"--prompt {prompt!r}: only the fields {{question}} and {{answer}} may appear "
                        f"({exc!r})") from exc
    if "{question}" not in prompt or "{answer}" not in prompt:
        raise DataError(f"--prompt {prompt!r} must contain both {{question}} and {{answer}}")


def find_image(images_dir: Path, key: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        p = images_dir / f"{key}{suffix}"
        if p.exists():
            return p
    raise DataError(f"{images_dir}: no image {key}.jpg/.png for a question; pass --images with the "
                    "folder of the split's images (file stem = image key)")


@torch.no_grad()
def zero_shot_answers(model: Any, tokenizer: Callable[[Sequence[str]], torch.Tensor],
                      items: Sequence[VQAItem], image_loader: Callable[[str], torch.Tensor],
                      candidates: Sequence[str], prompt: str | None = None, batch_size: int = 256,
                      device: str | torch.device = "cpu",
                      progress: Callable[[int, int], None] | None = None) -> dict[int, str]:
    """``{question_id: best candidate}`` by CLIP similarity of image and question+answer text.

    ``image_loader(image_key)`` returns the transformed ``[3, H, W]`` image. Text embeddings are
    computed once per distinct question string and images once per image key.
    """
    if not candidates:
        raise DataError("no candidate answers to choose from; pass an answer vocabulary")
    if prompt is not None:
        check_prompt(prompt)
    model.eval()
    image_cache: dict[str, torch.Tensor] = {}
    text_cache: dict[str, torch.Tensor] = {}
    out: dict[int, str] = {}
    for n, item in enumerate(items):
        img = image_cache.get(item.image_key)
        if img is None:
            x = image_loader(item.image_key).unsqueeze(0).to(device)
            img = F.normalize(model.encode_image(x).float(), dim=-1)[0]
            image_cache[item.image_key] = img
        txt = text_cache.get(item.question)
        if txt is None:
            texts = [answer_text(item.question, a, prompt) for a in candidates]
            chunks = []
            for s in range(0, len(texts), batch_size):
                tokens = tokenizer(texts[s: s + batch_size]).to(device)
                chunks.append(F.normalize(model.encode_text(tokens).float(), dim=-1))
            txt = torch.cat(chunks)
            text_cache[item.question] = txt
        out[item.question_id] = candidates[int((txt @ img).argmax())]
        if progress is not None:
            progress(n + 1, len(items))
    return out


@dataclass
class ZeroShotConfig:
    """``vln-clip vqa zero-shot``: encoder, data, candidate answers, prompt."""

    questions: str
    annotations: str
    images: str
    encoder: str = "clip_res50"
    weights: str | None = None
    random_weights: bool = False
    answer_vocab: str | None = None
    prompt: str = DEFAULT_PROMPT
    max_questions: int | None = None
    batch_size: int = 256
    device: str = "cpu"


def run_zero_shot(cfg: ZeroShotConfig, model: Any = None, tokenizer: Any = None, transform: Any = None,
                  weights_label: str | None = None,
                  progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Zero-shot accuracy without and with the prompt, per answer type (official rules).

    Candidates: the answer vocabulary file (``answer_vocab``; e.g. the 3,129 VQA v2 answers),
    else every normalised answer of the evaluated annotations (their set, not which question
    has which). Pass ``model``/``tokenizer``/``transform`` to score a model object instead of a
    registry encoder (e.g. a contrastive encoder trained in this project).
    """
    check_prompt(cfg.prompt)
    items = read_vqa(cfg.questions, cfg.annotations)[: cfg.max_questions]
    if not items:
        raise DataError(f"{cfg.questions}: no questions")
    if cfg.answer_vocab:
        candidates = AnswerVocab.load(cfg.answer_vocab).answers
    else:
        candidates = AnswerVocab.build(items, min_count=1).answers
    if model is None:
        model, tokenizer, transform, weights_label = load_clip(cfg.encoder, cfg.weights, cfg.random_weights,
                                                               cfg.device)
    images_dir = Path(cfg.images)

    def loader(key: str) -> torch.Tensor:
        from PIL import Image

        with Image.open(find_image(images_dir, key)) as im:
            return transform(im.convert("RGB"))

    report: dict[str, Any] = {"encoder": cfg.encoder, "weights": weights_label, "n_questions": len(items),
                              "n_candidates": len(candidates), "prompt": cfg.prompt}
    for name, prompt in (("no_prompt", None), ("prompt", cfg.prompt)):
        t0 = time.perf_counter()
        answers = zero_shot_answers(model, tokenizer, items, loader, candidates, prompt, cfg.batch_size,
                                    cfg.device, progress)
        scores = score_items(items, answers).as_dict()
        report[name] = {"overall": scores["overall"], "per_answer_type": scores["per_answer_type"],
                        "seconds": time.perf_counter() - t0}
    return report

