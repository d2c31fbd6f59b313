"""A contact sheet of a synthetic V&L world: images next to their questions, answers and captions.

Used for docs/vl-data.md (``vln-clip data synth-vl ... --contact-sheet PNG``) and to eyeball a
generation: each tile shows one image with a caption, two VQA questions with the ten
annotators' answers and the majority answer, one GQA question with its program, and one
SNLI-VE hypothesis with its label, all read back from the written files (so the sheet shows
what the readers see).
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from vln_clip.datasets.coco import read_captions
from vln_clip.datasets.gqa import read_gqa
from vln_clip.datasets.snli_ve import read_snli_ve
from vln_clip.datasets.vqa import read_vqa
from vln_clip.io import atomic_path, read_json

from .vl import VLPaths


def contact_sheet(vl_dir: str | os.PathLike[str], out_png: str | os.PathLike[str], split: str = "val",
                  count: int = 6, columns: int = 2, tile_width: int = 560) -> Path:
    """Write a PNG of ``count`` images of ``split`` (evenly spaced over the split) with their data."""
    paths = VLPaths.at(vl_dir)
    scenes: dict[str, Any] = read_json(paths.scenes, "synthetic V&L scene descriptions")
    caps = {im.image_key: im.captions for im in read_captions(paths.captions(split))}
    vqa: dict[str, list[Any]] = {}
    for it in read_vqa(paths.vqa_questions(split), paths.vqa_annotations(split)):
        vqa.setdefault(it.image_key, []).append(it)
    gqa: dict[str, list[Any]] = {}
    for g in read_gqa(paths.gqa(split)):
        gqa.setdefault(g.image_key, []).append(g)
    snli: dict[str, list[Any]] = {}
    for s in read_snli_ve(paths.snli_ve(split)):
        snli.setdefault(s.image_key, []).append(s)
    keys = [k for k in sorted(scenes) if scenes[k]["split"] == split and k in vqa]
    if not keys:
        raise ValueError(f"{vl_dir}: no {split} images with questions")
    step = max(1, len(keys) // count)
    keys = keys[::step][:count]
    font = ImageFont.load_default()
    pad, line_h, img_w = 8, 12, 240
    text_w = tile_width - img_w - 3 * pad
    chars = max(20, text_w // 6)
    tiles = []
    for key in keys:
        sc = scenes[key]
        img = Image.open(paths.image(key)).convert("RGB")
        img.thumbnail((img_w, 200))
        lines = [f"{key}  {sc['width']}x{sc['height']}  room: {sc['room']['type']}",
                 "objects: " + ", ".join(f"{o['colour']} {o['type']}" for o in sc["objects"])]
        lines.append("caption: " + caps[key][0])
        for it in vqa[key][:2]:
            lines.append(f"Q: {it.question}  [{it.question_type}]")
            lines.append(f"   answers: {' | '.join(it.answers)}")
            lines.append(f"   majority: {it.multiple_choice_answer}")
        if gqa.get(key):
            g = gqa[key][0]
            lines.append(f"GQA: {g.question} -> {g.answer}")
            lines.append(f"   {g.semantic_str}")
        if snli.get(key):
            s = snli[key][0]
            lines.append(f"SNLI-VE: {s.hypothesis} -> {s.gold_label}")
        wrapped = [w for line in lines for w in (textwrap.wrap(line, chars, subsequent_indent="   ") or [""])]
        h = max(img.height, len(wrapped) * line_h) + 2 * pad
        tile = Image.new("RGB", (tile_width, h), (255, 255, 255))
        tile.paste(img, (pad, pad))
        draw = ImageDraw.Draw(tile)
        for i, line in enumerate(wrapped):
            draw.text((img_w + 2 * pad, pad + i * line_h), line, fill=(20, 20, 20), font=font)
        tiles.append(tile)
    rows = [tiles[i:i + columns] for i in range(0, len(tiles), columns)]
    heights = [max(t.height for t in r) for r in rows]
    sheet = Image.new("RGB", (columns * tile_width, sum(heights)), (225, 225, 225))
    y = 0
    for r, h in zip(rows, heights):
        for c, t in enumerate(r):
            sheet.paste(t, (c * tile_width, y))
        y += h
    out = Path(out_png)
    with atomic_path(out) as tmp:
        # 256 colours: flat-shaded rooms and text lose nothing visible, the file shrinks ~3x
        sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(tmp, format="PNG", optimize=True)
    return out
