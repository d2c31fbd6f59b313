"""The synthetic V&L world: determinism, split by house, real formats, answers and labels that
follow from the scene descriptions, images that show what the descriptions say."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vln_clip.datasets.coco import read_captions, read_karpathy
from vln_clip.datasets.gqa import read_gqa
from vln_clip.datasets.lxmert import read_lxmert
from vln_clip.datasets.snli_ve import read_snli_ve
from vln_clip.datasets.vqa import read_vqa
from vln_clip.errors import DataError
from vln_clip.eval.vqa_accuracy import normalize_answer, vqa_accuracy
from vln_clip.synth import generate_world
from vln_clip.synth.generate import SynthConfig, _build_house
from vln_clip.synth.render import RayCaster, build_scene
from vln_clip.synth.vl import (VL_SPLITS, Camera, VLConfig, VLPaths, camera_rays, generate_vl_world, house_from_scene,
                               image_key, render_image, vl_statistics)
from vln_clip.synth.vl_language import (COLOUR_NAMES, HYPOTHESIS_TYPES, NUMBER_WORDS, OBJECT_NAMES, ROOM_NAMES,
                                        annotate, plural)

TINY_WORLD = dict(houses=3, paths_per_house=4, val_seen_per_house=2, rxr_paths_per_house=2, min_rooms=4, max_rooms=5,
                  two_floor_fraction=0.0)
SIZES = ((64, 48), (48, 64), (64, 64), (80, 45))
TINY_VL = VLConfig(images_per_house=6, sizes=SIZES, vqa_per_image=8, gqa_per_image=5, snli_per_image=6)

NAME_TO_TYPE = {n: t for t, names in OBJECT_NAMES.items() for n in names[:1]}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    return generate_world(tmp_path_factory.mktemp("vlw") / "w", seed=0, face_size=32, renderer="numpy", **TINY_WORLD)


@pytest.fixture(scope="module")
def vl(world, tmp_path_factory: pytest.TempPathFactory) -> VLPaths:
    return generate_vl_world(world.root, tmp_path_factory.mktemp("vl") / "a", TINY_VL)


@pytest.fixture(scope="module")
def scenes(vl) -> dict:
    return json.loads(vl.scenes.read_text())


def _tree_hash(root: Path, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in exclude}


def _vqa(vl: VLPaths, split: str):
    return read_vqa(vl.vqa_questions(split), vl.vqa_annotations(split))


def test_deterministic_per_seed_and_cached(world, vl, tmp_path):
    again = generate_vl_world(world.root, tmp_path / "b", TINY_VL)
    assert again.timings  # generated, not found
    assert _tree_hash(vl.root) == _tree_hash(again.root)  # byte-identical, image files included
    cached = generate_vl_world(world.root, tmp_path / "b", TINY_VL)
    assert not cached.timings  # same parameters: returned at once
    other = generate_vl_world(world.root, tmp_path / "c", VLConfig(**{**TINY_VL.__dict__, "seed": 1}))
    h1, h2 = _tree_hash(vl.root), _tree_hash(other.root)
    assert h1["scenes.json"] != h2["scenes.json"] and h1["vqa/v2_mscoco_train_annotations.json"] != \
        h2["vqa/v2_mscoco_train_annotations.json"]
    # an interrupted run (summary and an image missing) is completed to the same bytes
    (again.root / "vl_world.json").unlink()
    victim = sorted(again.images.iterdir())[3]
    victim.unlink()
    generate_vl_world(world.root, again.root, TINY_VL)
    assert _tree_hash(again.root) == h1


def test_split_by_house_no_image_in_two_splits(world, vl, scenes):
    summary = json.loads(vl.vl_world.read_text())
    assert summary["complete"] is True
    nav = world.splits
    assert summary["splits"] == {"train": sorted(nav["train"]), "val": sorted(nav["val_unseen"]),
                                 "test": sorted(nav["test"])}
    houses = {s: {sc["house"] for sc in scenes.values() if sc["split"] == s} for s in VL_SPLITS}
    assert all(houses[s] for s in VL_SPLITS)
    assert not (houses["train"] & houses["val"]) and not (houses["train"] & houses["test"]) \
        and not (houses["val"] & houses["test"])
    keys = {s: {k for k, sc in scenes.items() if sc["split"] == s} for s in VL_SPLITS}
    for s in VL_SPLITS:
        others = set().union(*(keys[o] for o in VL_SPLITS if o != s))
        for items in (_vqa(vl, s), read_captions(vl.captions(s)), read_gqa(vl.gqa(s)), read_snli_ve(vl.snli_ve(s))):
            used = {i.image_key for i in items}
            assert used <= keys[s] and not (used & others), s
    karpathy = read_karpathy(vl.karpathy)
    assert {im.image_key: im.split for im in karpathy} == {k: sc["split"] for k, sc in scenes.items()}
    lx = {s: {i.image_key for i in read_lxmert(vl.lxmert(s))} for s in ("train", "val")}
    assert lx["train"] == keys["train"] and lx["val"] == keys["val"]  # test images never pre-trained on
    assert not vl.lxmert("test").exists()


def test_formats_read_back_with_images(vl, scenes):
    summary = json.loads(vl.vl_world.read_text())
    counts = summary["counts"]
    assert sorted(scenes) == [image_key(sc["image_id"]) for sc in sorted(scenes.values(), key=lambda s: s["image_id"])]
    for key, sc in scenes.items():
        with Image.open(vl.image(key)) as im:
            assert im.format == "JPEG" and im.size == (sc["width"], sc["height"])
        assert (sc["width"], sc["height"]) in SIZES
    assert len({(sc["width"], sc["height"]) for sc in scenes.values()}) >= 3  # several aspect ratios
    for s in VL_SPLITS:
        items = _vqa(vl, s)
        assert len(items) == counts["vqa_questions"][s] > 0
        assert all(len(i.answers) == 10 and i.image_key == image_key(i.image_id) for i in items)
        caps = read_captions(vl.captions(s))
        assert len(caps) == counts["images"][s] and all(len(c.captions) == 5 for c in caps)
        assert all(len(set(c.captions)) == 5 for c in caps)
        assert all((c.width, c.height) == (scenes[c.image_key]["width"], scenes[c.image_key]["height"]) for c in caps)
        g = read_gqa(vl.gqa(s))
        assert len(g) == counts["gqa_questions"][s] and all(q.is_balanced and q.semantic and q.full_answer for q in g)
        assert all(set(q.types) == {"structural", "semantic", "detailed"} for q in g)
        assert len(read_snli_ve(vl.snli_ve(s))) == counts["snli_ve_pairs"][s]
    for im in read_karpathy(vl.karpathy):
        for sent in im.sentences:
            assert sent.tokens == re.findall(r"[a-z0-9]+", sent.raw.lower()) and sent.tokens
    for item in read_lxmert(vl.lxmert("train")):
        assert len(item.sentences["mscoco"]) == 5
        for source, question, label in item.questions():
            assert label and all(0 < v <= 1 for v in label.values())


def _visible(sc, kind):
    return [o for o in sc["objects"] if o["type"] == kind]


def _type_of(name: str) -> str:
    return NAME_TO_TYPE[name]


def test_vqa_answers_follow_from_the_scene(vl, scenes):
    """Re-derive every answer from the description with independent rules (parsing the question)."""
    checked = {k: 0 for k in ("count", "colour", "room", "exist", "left", "beside", "verify_room")}
    for s in VL_SPLITS:
        for it in _vqa(vl, s):
            sc = scenes[it.image_key]
            mc = it.multiple_choice_answer
            norm = [normalize_answer(a) for a in it.answers]
            # the majority (after the official normalisation) is the recorded answer, strictly
            top = max(set(norm), key=norm.count)
            assert normalize_answer(mc) == top and sorted(norm.count(a) for a in set(norm))[-1] > \
                ([0] + sorted(norm.count(a) for a in set(norm)))[-2]
            q = it.question
            if m := re.fullmatch(r"How many (.+?) (?:are there|are in the picture|can you see)\?", q):
                what = m.group(1)
                if what in ("objects", "things", "pieces of furniture"):
                    want = len(sc["objects"])
                elif (c := what.split(" ")[0]) in COLOUR_NAMES and what.split(" ", 1)[1] in ("objects", "things",
                                                                                           "pieces of furniture"):
                    want = sum(o["colour"] == c for o in sc["objects"])
                else:
                    kind = next(t for t, n in OBJECT_NAMES.items() if plural(n[0]) == what)
                    want = len(_visible(sc, kind))
                assert mc == str(want), q
                checked["count"] += 1
            elif m := re.fullmatch(r"What color is the (.+?)(?: in the picture)?\?", q):
                (o,) = _visible(sc, _type_of(m.group(1)))
                assert mc == o["colour"]
                checked["colour"] += 1
            elif q.startswith("What room"):
                assert mc == sc["room"]["type"] and sc["room_share"] >= 0.5
                checked["room"] += 1
            elif m := re.fullmatch(r"Is this an? (.+)\?", q):
                room = next(t for t, n in ROOM_NAMES.items() if n[0] == m.group(1))
                assert mc == ("yes" if room == sc["room"]["type"] else "no")
                checked["verify_room"] += 1
            elif m := re.fullmatch(r"Is there an? (.+?)(?: in the picture| in the image)?\?", q):
                words = m.group(1)
                colour = words.split(" ")[0] if words.split(" ")[0] in COLOUR_NAMES and words not in NAME_TO_TYPE \
                    else None
                kind = _type_of(words.split(" ", 1)[1] if colour else words)
                objs = [o for o in _visible(sc, kind) if colour is None or o["colour"] == colour]
                assert mc == ("yes" if objs else "no"), q
                if mc == "no":  # never asked about a glimpse
                    assert colour or all(p["type"] != kind for p in sc["partial"])
                checked["exist"] += 1
            elif m := re.fullmatch(r"Is the (.+?) (?:to the left of|left of|on the left side of) the (.+)\?", q):
                (a,) = _visible(sc, _type_of(m.group(1)))
                (b,) = _visible(sc, _type_of(m.group(2)))
                assert abs(a["center"][0] - b["center"][0]) >= 0.12
                assert mc == ("yes" if a["center"][0] < b["center"][0] else "no")
                checked["left"] += 1
            elif m := re.fullmatch(r"What is to the (left|right) of the (.+)\?", q):
                (o,) = _visible(sc, _type_of(m.group(2)))
                x = o["center"][0]
                side = [p for p in sc["objects"] if (p["center"][0] <= x - 0.12 if m.group(1) == "left"
                                                     else p["center"][0] >= x + 0.12)]
                nearest = min(side, key=lambda p: abs(p["center"][0] - x))
                assert mc == OBJECT_NAMES[nearest["type"]][0]
                checked["beside"] += 1
    assert all(v > 0 for v in checked.values()), checked


def test_entailment_labels_follow_from_the_scene(vl, scenes):
    labels, templates = set(), set()
    for s in VL_SPLITS:
        for it in read_snli_ve(vl.snli_ve(s)):
            sc, h, label = scenes[it.image_key], it.hypothesis, it.gold_label
            labels.add(label)
            assert it.premise in read_caps(vl, s)[it.image_key]
            if m := re.fullmatch(r"There is an? (.+) in another room of this house\.", h):
                template = {"other room"}
                assert label == "neutral" and not _visible(sc, _type_of(m.group(1)))
            elif m := re.fullmatch(r"There is no (.+) in the picture\.", h):
                template = {"no object"}
                kind = _type_of(m.group(1))
                assert label == ("contradiction" if _visible(sc, kind) else "entailment")
                assert all(p["type"] != kind for p in sc["partial"])
            elif m := re.fullmatch(r"There is an? (.+) in the picture\.", h):
                template = {"object"}
                words = m.group(1)
                names = {n: t for t, ns in OBJECT_NAMES.items() for n in ns}
                colour = next((c for c, cs in COLOUR_NAMES.items() for x in cs if words.startswith(x + " ")
                               and words[len(x) + 1:] in names), None)
                name = words.split(" ", 1)[1] if colour else words
                ok = [o for o in _visible(sc, names[name]) if colour is None or o["colour"] == colour]
                assert label == ("entailment" if ok else "contradiction"), h
            elif m := re.fullmatch(r"This is an? (.+)\.", h):
                template = {"room"}
                room = next(t for t, ns in ROOM_NAMES.items() if m.group(1) in ns)
                assert label == ("entailment" if room == sc["room"]["type"] else "contradiction")
            elif m := re.fullmatch(r"The (.+) is to the (left|right) of the (.+)\.", h):
                template = {"relation"}
                names = {n: t for t, ns in OBJECT_NAMES.items() for n in ns}
                (a,) = _visible(sc, names[m.group(1)])
                (b,) = _visible(sc, names[m.group(3)])
                truth = a["center"][0] < b["center"][0] if m.group(2) == "left" else a["center"][0] > b["center"][0]
                assert label == ("entailment" if truth else "contradiction")
            elif (m := re.fullmatch(r"The (.+) is (\w+)\.", h)) and m.group(2) in COLOUR_NAMES:
                template = {"colour"}
                names = {n: t for t, ns in OBJECT_NAMES.items() for n in ns}
                objs = _visible(sc, names[m.group(1)])
                if not objs:  # not in the picture: its colour is not for the image to decide
                    assert label == "neutral" and all(p["type"] != names[m.group(1)] for p in sc["partial"])
                else:
                    (o,) = objs
                    assert label == ("entailment" if o["colour"] == m.group(2) else "contradiction")
            elif m := re.fullmatch(r"There (?:is|are) (\w+) pieces? of furniture\.", h):
                template = {"count"}
                n = NUMBER_WORDS.index(m.group(1))
                assert label == ("entailment" if n == len(sc["objects"]) else "contradiction") and not sc["partial"]
            else:
                template = {"unobservable", "outside"}
                assert label == "neutral", h  # the unobservable and the outside of the house
            assert it.extra["hypothesis_type"] in template, h  # the template it was made from
            templates.add(it.extra["hypothesis_type"])
    assert labels == {"entailment", "neutral", "contradiction"}
    assert templates <= set(HYPOTHESIS_TYPES) and len(templates) >= 7


_CAPS: dict = {}


def read_caps(vl, split):
    if (vl.root, split) not in _CAPS:
        _CAPS[(vl.root, split)] = {c.image_key: c.captions for c in read_captions(vl.captions(split))}
    return _CAPS[(vl.root, split)]


def test_gqa_programs_and_answers(vl, scenes):
    for s in VL_SPLITS:
        for q in read_gqa(vl.gqa(s)):
            sc = scenes[q.image_key]
            ops = [st.operation for st in q.semantic]
            for j, st in enumerate(q.semantic):
                assert all(d < j for d in st.dependencies)
            ids = {o["id"]: o for o in sc["objects"]}
            if q.types["detailed"] == "queryAttr":
                oid = int(re.search(r"\((\d+)\)", q.semantic[0].argument).group(1))
                assert ops == ["select", "query"] and q.answer == ids[oid]["colour"]
            elif q.types["detailed"] == "existAttr":
                oid = int(re.search(r"\((\d+)\)", q.semantic[0].argument).group(1))
                assert q.answer == ("yes" if ids[oid]["colour"] == q.semantic[1].argument else "no")
            elif q.types["detailed"] == "placeQuery":
                assert q.answer == sc["room"]["type"]
            elif q.types["detailed"] == "relChooser":
                oid = int(re.search(r"\((\d+)\)", q.semantic[0].argument).group(1))
                xid = int(re.search(r"\((\d+)\)$", q.semantic[1].argument).group(1))
                left = ids[xid]["center"][0] < ids[oid]["center"][0]
                assert q.answer == ("left" if left else "right")
            elif q.types["detailed"] == "existAnd":
                assert ops == ["select", "exist", "select", "exist", "and"]
                present = ["(-)" not in q.semantic[k].argument for k in (0, 2)]
                assert q.answer == ("yes" if all(present) else "no")
            assert q.semantic_str.startswith("select: ")
    yes_no = [q.answer for s in VL_SPLITS for q in read_gqa(vl.gqa(s)) if q.answer in ("yes", "no")]
    assert abs(yes_no.count("yes") - yes_no.count("no")) <= max(3, len(yes_no) // 5)


def test_images_show_what_the_description_says(world, vl, scenes):
    """Pixels sampled from the skybox agree with an exact ray cast of the same camera, and the
    objects the description lists are the ones covering those pixels."""
    from vln_clip.features.views import read_pano_rotations

    errs = []
    for key in sorted(scenes)[::4]:
        sc = scenes[key]
        scene = json.loads((world.scenes / f"{sc['house']}.json").read_text())
        cam = Camera(sc["house"], sc["viewpoint"], tuple(sc["camera"]), sc["heading"], sc["elevation"], sc["width"],
                     sc["height"], sc["vfov"])
        caster = RayCaster(build_scene(house_from_scene(scene)))
        dirs = camera_rays(cam)
        truth = caster.colours(np.asarray(cam.eye), dirs.reshape(-1, 3)).reshape(dirs.shape)
        img = np.asarray(Image.open(vl.image(key)).convert("RGB"), dtype=np.float64)
        errs.append(np.abs(img - truth).mean())
        rendered = render_image(world.root, cam, read_pano_rotations(world.connectivity, cam.scan)[cam.viewpoint])
        assert np.abs(rendered.astype(float) - img).mean() < 3.0  # the JPEG of this very image
        t, idx = caster.cast(np.asarray(cam.eye), dirs.reshape(-1, 3))
        owner = np.where(idx >= 0, caster.r.owner[np.maximum(idx, 0)], -1)
        big = {int(k) for k in np.unique(owner) if k >= 0 and (owner == k).mean() >= 0.02}
        assert big <= {o["id"] for o in sc["objects"]}, key
    assert np.mean(errs) < 20.0, errs  # 32-pixel faces upsampled: blur at edges, same picture


def test_house_from_scene_rebuilds_the_rendered_geometry(world):
    cfg = SynthConfig(seed=0, **{k: v for k, v in TINY_WORLD.items()})
    for h, scan in enumerate(world.connectivity.joinpath("scans.txt").read_text().split()):
        import tempfile

        original = _build_house(cfg, h, Path(tempfile.mkdtemp())).rects
        rebuilt = build_scene(house_from_scene(json.loads((world.scenes / f"{scan}.json").read_text())))
        assert len(original) == len(rebuilt)
        np.testing.assert_allclose(rebuilt.coord, original.coord, atol=1e-3)
        np.testing.assert_allclose(rebuilt.lo, original.lo, atol=1e-3)
        np.testing.assert_allclose(rebuilt.hi, original.hi, atol=1e-3)
        assert (rebuilt.owner == original.owner).all() and np.allclose(rebuilt.rgb, original.rgb)


def test_annotators_vary_but_majority_is_right():
    rng = np.random.default_rng(0)
    raw_variety, scores = 0, []
    for k in range(300):
        answers, conf = annotate(rng, "2", "number", (), ["1", "3"])
        assert len(answers) == 10 and set(conf) <= {"yes", "maybe", "no"}
        norm = [normalize_answer(a) for a in answers] if len(set(answers)) > 1 else answers
        assert max(set(norm), key=norm.count) == "2"
        raw_variety += len(set(answers)) > 1
        scores.append(answers)
    assert raw_variety > 150  # "two", "Two", "2." ... most questions have surface variation
    acc = vqa_accuracy(scores, ["2"] * len(scores))
    assert acc.mean() > 0.97  # normalisation maps the variants back: the right answer scores ~1
    assert vqa_accuracy(scores, ["two"] * len(scores)).mean() < acc.mean() + 1e-9
    sofa = [annotate(rng, "sofa", "noun", ("couch",), ["chair"])[0] for _ in range(200)]
    flat = [a for s in sofa for a in s]
    assert any(a.lower().startswith("couch") for a in flat) and any(a.startswith("a sofa") or a.startswith("the sofa")
                                                                   for a in flat)
    assert any(a[:1].isupper() for a in flat) and any(a.endswith(".") for a in flat)


def test_statistics_and_cli(world, vl, tmp_path, capsys):
    from vln_clip.cli.main import main

    stats = vl_statistics(vl.root)
    prior = stats["vqa"]["prior"]
    val = _vqa(vl, "val")
    preds = [prior["per_question_type"][i.question_type]["answer"] for i in val]
    assert prior["accuracy"] == round(100 * float(vqa_accuracy([i.answers for i in val], preds).mean()), 2)
    assert sum(stats["vqa"]["train"]["question_types"].values()) == stats["vqa"]["train"]["questions"]
    rc = main(["data", "synth-vl", "--world", str(world.root), "--out", str(vl.root), "--images-per-house", "6",
               "--sizes", ",".join(f"{w}x{h}" for w, h in SIZES), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["cached"] is True  # the CLI builds the same config as the fixture
    rc = main(["data", "synth-vl", "--world", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")])
    assert rc == 2 and "vln-clip data synth" in capsys.readouterr().err
    rc = main(["data", "synth-vl", "--world", str(world.root), "--out", str(tmp_path / "x"), "--sizes", "64by48"])
    assert rc == 2 and "WIDTHxHEIGHT" in capsys.readouterr().err
    with pytest.raises(DataError, match="no-render"):
        bare = generate_world(tmp_path / "bare", seed=0, render=False, **TINY_WORLD)
        generate_vl_world(bare.root, tmp_path / "y", TINY_VL)


def test_probe_is_deterministic_and_scored_officially(vl):
    from vln_clip.synth.vl_probe import probe

    a = probe(vl.root, epochs=3, hidden=32, train_split="train", eval_split="val")
    b = probe(vl.root, epochs=3, hidden=32, train_split="train", eval_split="val")
    assert a == b  # same seed, same data order: same numbers
    for name in ("question_only", "question_and_image"):
        assert 0.0 <= a[name]["accuracy"] <= 100.0 and set(a[name]["per_answer_type"]) <= {"yes/no", "number", "other"}
    assert a["train_questions"] == len(_vqa(vl, "train")) and a["eval_questions"] == len(_vqa(vl, "val"))


def test_resume_after_interruption_renders_only_the_rest(world, vl, tmp_path, monkeypatch):
    import vln_clip.synth.vl as vlmod

    real = vlmod.render_image
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 7:
            raise KeyboardInterrupt  # killed while rendering
        return real(*args, **kwargs)

    monkeypatch.setattr(vlmod, "render_image", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate_vl_world(world.root, tmp_path / "r", TINY_VL)
    assert not (tmp_path / "r" / "vl_world.json").exists() and len(list((tmp_path / "r" / "images").iterdir())) == 7
    calls["n"] = -10_000
    done = generate_vl_world(world.root, tmp_path / "r", TINY_VL)
    total = len(json.loads(vl.scenes.read_text()))
    assert calls["n"] == -10_000 + total - 7  # the seven finished images were kept
    assert _tree_hash(done.root) == _tree_hash(vl.root)


def test_visual7w_questions_are_pretraining_only(world, vl, tmp_path):
    """--visual7w-per-image: extra QA in the LXMERT mix (train/val images only), labelled, none of
    them a fine-tuning question of that image, and every fine-tuning file byte for byte as without."""
    extra = generate_vl_world(world.root, tmp_path / "x", VLConfig(**{**TINY_VL.__dict__, "visual7w_per_image": 6}))
    base, more = _tree_hash(vl.root), _tree_hash(extra.root)
    for name in base:
        if not name.startswith("lxmert/") and name != "vl_world.json":
            assert more[name] == base[name], name
    answers = {a for split in VL_SPLITS for q in _vqa(vl, split) for a in q.answers}
    answers |= {g.answer for split in VL_SPLITS for g in read_gqa(vl.gqa(split))}
    n = 0
    for split in ("train", "val"):
        plain = {it.image_key: it for it in read_lxmert(vl.root / "lxmert" / f"mscoco_{split}.json")}
        for it in read_lxmert(extra.root / "lxmert" / f"mscoco_{split}.json"):
            old = plain[it.image_key]
            for src in ("mscoco", "vqa", "gqa"):  # the other sources are unchanged
                assert it.sentences[src] == old.sentences[src] and it.labels.get(src) == old.labels.get(src)
            questions, labels = it.sentences["visual7w"], it.labels["visual7w"]
            assert len(questions) == len(labels) <= 6 and len(set(questions)) == len(questions)
            assert not set(questions) & set(old.sentences["vqa"] + old.sentences["gqa"])
            for lab in labels:
                assert lab and set(lab) <= answers and max(lab.values()) > 0
            n += len(questions)
    assert n > 0
    assert "visual7w_per_image" not in json.loads(vl.vl_world.read_text())["params"]  # old worlds keep their identity
