"""COCO Captions (``captions_<split>.json``) and the Karpathy split file (``dataset_coco.json``).

* COCO Captions: ``{"info", "licenses", "images": [{"id", "file_name", "height", "width", ...}],
  "annotations": [{"id", "image_id", "caption"}]}``. Read as one :class:`CaptionImage` per
  image with its captions (the test images of a split have none).
* Karpathy (Karpathy & Fei-Fei 2015, the split every captioning paper reports on):
  ``{"dataset": "coco", "images": [{"filepath", "filename", "imgid", "cocoid", "split",
  "sentids", "sentences": [{"tokens", "raw", "imgid", "sentid"}]}]}`` with ``split`` in
  train | restval | val | test (113,287 train + restval, 5,000 val, 5,000 test on COCO;
  ``restval`` is trained on). The Flickr8k/30k files of the same layout have no ``filepath`` /
  ``cocoid``; they are read too.

The image key is the file-name stem (``COCO_val2014_000000391895``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from vln_clip.errors import DataError
from vln_clip.io import write_json

from .common import Entry, PathLike, extras, load_json, stem, top_object

KARPATHY_SPLITS: tuple[str, ...] = ("train", "restval", "val", "test")


@dataclass
class CaptionImage:
    """A COCO image with its reference captions (``caption_ids`` aligned with ``captions``)."""

    image_id: int
    image_key: str
    file_name: str
    height: int | None = None
    width: int | None = None
    captions: list[str] = field(default_factory=list)
    caption_ids: list[int] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def read_captions(path: PathLike) -> list[CaptionImage]:
    """A COCO captions file, checked, as images in file order with their captions in file order."""
    path = Path(path)
    data = load_json(path, "COCO captions file")
    images = top_object(data, path, "COCO captions file", "images")
    annotations = top_object(data, path, "COCO captions file", "annotations")
    fix = f"fix the entry or re-download {path.name} (cocodataset.org annotations)"
    by_id: dict[int, CaptionImage] = {}
    for i, im in enumerate(images):
        entry = Entry(path, f"images[{i}]", fix)
        image_id = entry.field(im, "id", int)
        entry.where = f"images[{i}] (id {image_id})"
        file_name = entry.field(im, "file_name", str)
        if image_id in by_id:
            raise entry.error(f"image id {image_id} appears twice", "each image must appear once: remove the duplicate")
        by_id[image_id] = CaptionImage(image_id, stem(file_name), file_name,
                                       entry.field(im, "height", int, optional=True),
                                       entry.field(im, "width", int, optional=True),
                                       extra=extras(im, ("id", "file_name", "height", "width")))
    seen: set[int] = set()
    for i, ann in enumerate(annotations):
        entry = Entry(path, f"annotations[{i}]", fix)
        ann_id = entry.field(ann, "id", int)
        entry.where = f"annotations[{i}] (id {ann_id})"
        if ann_id in seen:
            raise entry.error(f"annotation id {ann_id} appears twice", "give every caption its own id")
        seen.add(ann_id)
        image_id = entry.field(ann, "image_id", int)
        caption = entry.field(ann, "caption", str)
        image = by_id.get(image_id)
        if image is None:
            raise entry.error(f"image_id {image_id} is not in 'images'", "add the image or drop the caption")
        image.captions.append(caption)
        image.caption_ids.append(ann_id)
    return list(by_id.values())


def write_captions(path: PathLike, images: Sequence[CaptionImage], *, info: dict[str, Any] | None = None,
                   licenses: list[Any] | None = None) -> None:
    """Write a COCO captions file atomically (caption ids are numbered from 1 when an image has none)."""
    out_images, out_anns = [], []
    used = {cid for im in images for cid in im.caption_ids}
    next_id = max(used, default=0) + 1
    for im in images:
        if stem(im.file_name) != im.image_key:
            raise ValueError(f"image {im.image_id}: image_key {im.image_key!r} is not the stem of {im.file_name!r}")
        row: dict[str, Any] = {"id": im.image_id, "file_name": im.file_name}
        if im.height is not None:
            row["height"] = im.height
        if im.width is not None:
            row["width"] = im.width
        row.update(im.extra)
        out_images.append(row)
        ids = list(im.caption_ids)
        if len(ids) != len(im.captions):
            if ids:
                raise ValueError(f"image {im.image_id}: {len(ids)} caption ids for {len(im.captions)} captions")
            ids = list(range(next_id, next_id + len(im.captions)))
            next_id += len(ids)
        out_anns.extend({"image_id": im.image_id, "id": cid, "caption": c} for cid, c in zip(ids, im.captions))
    write_json(path, {"info": info or {"description": "written by vln-clip"}, "licenses": licenses or [],
                      "images": out_images, "annotations": out_anns})


# ----------------------------------------------------------------------------------------
# Karpathy split file


@dataclass
class KarpathySentence:
    sentid: int
    raw: str
    tokens: list[str]


@dataclass
class KarpathyImage:
    """One image of ``dataset_coco.json`` (``filepath``/``cocoid`` are None for Flickr files)."""

    imgid: int
    image_key: str
    filename: str
    split: str
    sentences: list[KarpathySentence] = field(default_factory=list)
    filepath: str | None = None
    cocoid: int | None = None

    @property
    def raw_captions(self) -> list[str]:
        return [s.raw for s in self.sentences]


def read_karpathy(path: PathLike) -> list[KarpathyImage]:
    """A Karpathy split file, checked (splits, sentence ids and their image ids)."""
    path = Path(path)
    data = load_json(path, "Karpathy split file")
    images = top_object(data, path, "Karpathy split file", "images")
    fix = f"fix the entry or re-download {path.name} (Karpathy's caption_datasets.zip)"
    out: list[KarpathyImage] = []
    seen_img: set[int] = set()
    seen_sent: dict[int, int] = {}
    for i, im in enumerate(images):
        entry = Entry(path, f"images[{i}]", fix)
        imgid = entry.field(im, "imgid", int)
        entry.where = f"images[{i}] (imgid {imgid})"
        if imgid in seen_img:
            raise entry.error(f"imgid {imgid} appears twice", "each image must appear once: remove the duplicate")
        seen_img.add(imgid)
        filename = entry.field(im, "filename", str)
        split = entry.one_of(entry.field(im, "split", str), "split", KARPATHY_SPLITS)
        sentences_raw = entry.field(im, "sentences", list)
        sentences = []
        for j, s in enumerate(sentences_raw):
            sub = Entry(path, f"{entry.where}: sentences[{j}]", fix)
            sentid = sub.field(s, "sentid", int)
            if sentid in seen_sent:
                raise sub.error(f"sentid {sentid} is also used by image imgid {seen_sent[sentid]}",
                                "give every sentence its own sentid")
            seen_sent[sentid] = imgid
            s_img = sub.field(s, "imgid", int, optional=True, default=imgid)
            if s_img != imgid:
                raise sub.error(f"imgid {s_img} differs from its image's imgid {imgid}", "fix the sentence's imgid")
            sentences.append(KarpathySentence(sentid, sub.field(s, "raw", str), sub.str_list(s, "tokens")))
        sentids = entry.field(im, "sentids", list, optional=True)
        if sentids is not None and sorted(map(repr, sentids)) != sorted(repr(s.sentid) for s in sentences):
            raise entry.error(f"'sentids' {sentids} are not the sentid of its sentences "
                              f"{[s.sentid for s in sentences]}", "make sentids list the sentences' sentid")
        out.append(KarpathyImage(imgid, stem(filename), filename, split, sentences,
                                 entry.field(im, "filepath", str, optional=True),
                                 entry.field(im, "cocoid", int, optional=True)))
    return out


def write_karpathy(path: PathLike, images: Sequence[KarpathyImage], dataset: str = "coco") -> None:
    """Write a Karpathy split file atomically."""
    rows = []
    for im in images:
        if im.split not in KARPATHY_SPLITS:
            raise ValueError(f"image {im.imgid}: split {im.split!r} is not one of {KARPATHY_SPLITS}")
        if stem(im.filename) != im.image_key:
            raise ValueError(f"image {im.imgid}: image_key {im.image_key!r} is not the stem of {im.filename!r}")
        row: dict[str, Any] = {}
        if im.filepath is not None:
            row["filepath"] = im.filepath
        row.update({"sentids": [s.sentid for s in im.sentences], "filename": im.filename, "imgid": im.imgid,
                    "split": im.split,
                    "sentences": [{"tokens": list(s.tokens), "raw": s.raw, "imgid": im.imgid, "sentid": s.sentid}
                                  for s in im.sentences]})
        if im.cocoid is not None:
            row["cocoid"] = im.cocoid
        rows.append(row)
    write_json(path, {"images": rows, "dataset": dataset})


def karpathy_split(images: Iterable[KarpathyImage], split: str, *, restval_as_train: bool = True) -> list[KarpathyImage]:
    """The images of one split; ``restval`` counts as ``train`` (as in every Karpathy-split paper) unless told not to."""
    if split not in KARPATHY_SPLITS:
        raise DataError(f"split {split!r} is not one of {', '.join(KARPATHY_SPLITS)}")
    wanted = {"train", "restval"} if (split == "train" and restval_as_train) else {split}
    return [im for im in images if im.split in wanted]
