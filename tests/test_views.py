"""View geometry on cube maps: which face each of the 36 views sees, where up and down are,
the real pose rotation's effect, equirect vs cube consistency, file layouts and errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from vln_clip.errors import DataError
from vln_clip.features.views import (CANONICAL_ROTATION, ViewSpec, cube_lookup, discretized_rays,
                                     equirect_directions, face_directions, faces_to_strip, load_skybox,
                                     panorama_views, render_equirect, render_skybox, skybox_from_function,
                                     view_rays, write_skybox)

COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255], [0, 255, 255]],
                   dtype=np.uint8)  # face i has colour i


def yaw(deg: float) -> np.ndarray:
    a = math.radians(deg)
    # A rotation about world z applied after the canonical pose: face 1 then looks at heading -deg.
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    return rz @ CANONICAL_ROTATION


def colour_faces(size: int = 16) -> np.ndarray:
    return np.repeat(np.repeat(COLOURS[:, None, None, :], size, 1), size, 2)


def render(faces: np.ndarray, rotation: np.ndarray, spec: ViewSpec = ViewSpec(64, 48)) -> np.ndarray:
    strip = faces_to_strip(torch.from_numpy(faces).permute(0, 3, 1, 2)[None])
    views = render_skybox(strip, torch.tensor(rotation, dtype=torch.float32)[None], discretized_rays(spec))
    return views[0].permute(0, 2, 3, 1).numpy()  # [36, H, W, 3]


def face_of(pixel: np.ndarray) -> int:
    return int(np.argmin(((COLOURS.astype(int) - pixel.astype(int)) ** 2).sum(1)))


def test_each_view_sees_the_expected_face_canonical_pose():
    views = render(colour_faces(), CANONICAL_ROTATION)
    h, w = views.shape[1:3]
    around = {0: 1, 3: 2, 6: 3, 9: 4}  # heading step -> side face (1 at heading 0, clockwise)
    for step, face in around.items():
        for level in range(3):
            ix = step + 12 * level
            assert face_of(views[ix, h // 2, w // 2]) == face, f"view {ix} centre"
        assert face_of(views[12 + step, 0, w // 2]) == face  # level view: whole column on the side face
        assert face_of(views[12 + step, h - 1, w // 2]) == face
        assert face_of(views[24 + step, 0, w // 2]) == 0  # looking up: top edge at +60 deg sees up face
        assert face_of(views[step, h - 1, w // 2]) == 5  # looking down: bottom edge sees down face
    # Between two side faces (heading 45 is not a view, but 30/60 are): 30 deg still face 1, 60 face 2.
    assert face_of(views[13, h // 2, w // 2]) == 1 and face_of(views[14, h // 2, w // 2]) == 2
    # Heading 330 looks at face 4's side (between face 4 at 270 and face 1 at 0, closer to 1).
    assert face_of(views[23, h // 2, w // 2]) == 1 and face_of(views[22, h // 2, w // 2]) == 4


def test_pose_yaw_turns_the_faces():
    views = render(colour_faces(), yaw(-90))  # face 1 now looks at heading 90
    h, w = views.shape[1:3]
    assert face_of(views[15, h // 2, w // 2]) == 1
    assert face_of(views[18, h // 2, w // 2]) == 2
    assert face_of(views[12, h // 2, w // 2]) == 4


def test_up_and_down_orientation():
    """Face 0's bottom edge touches face 1's top edge; face 5's top edge touches face 1's bottom."""
    S = 16
    faces = np.zeros((6, S, S, 3), dtype=np.uint8)
    faces[0, S // 2:] = (255, 0, 0)  # bottom half of the up face: red (towards face 1)
    faces[0, : S // 2] = (0, 0, 255)  # top half: blue (towards face 3)
    faces[5, : S // 2] = (0, 255, 0)  # top half of the down face: green (towards face 1)
    faces[5, S // 2:] = (255, 255, 0)
    faces[1, : S // 2] = (255, 255, 255)  # face 1: white sky half, black floor half
    views = render(faces, CANONICAL_ROTATION)
    h, w = views.shape[1:3]
    assert tuple(views[24, 0, w // 2]) == (255, 0, 0)  # up at heading 0: red part of the up face
    assert tuple(views[30, 0, w // 2]) == (0, 0, 255)  # up at heading 180: blue part
    assert tuple(views[0, h - 1, w // 2]) == (0, 255, 0)  # down at heading 0: green part
    assert tuple(views[6, h - 1, w // 2]) == (255, 255, 0)
    assert tuple(views[12, 2, w // 2]) == (255, 255, 255)  # upright: top of the level view is sky
    assert tuple(views[12, h - 3, w // 2]) == (0, 0, 0)


def test_left_right_not_mirrored():
    """Face 1's left half shows in the left half of view 12 (no mirror)."""
    S = 16
    faces = colour_faces(S).copy()
    faces[1, :, : S // 2] = (10, 10, 10)
    views = render(faces, CANONICAL_ROTATION)
    h, w = views.shape[1:3]
    assert tuple(views[12, h // 2, 2]) == (10, 10, 10)
    assert tuple(views[12, h // 2, w - 3]) == tuple(COLOURS[1])


def test_face_directions_invert_cube_lookup_for_a_real_pose(shared_connectivity):
    item = json.loads((shared_connectivity / "17DRP5sb8fy_connectivity.json").read_text())[0]
    rot = np.asarray(item["pose"], dtype=float).reshape(4, 4)[:3, :3]
    S = 8
    d = torch.tensor(face_directions(S, rot), dtype=torch.float32)
    face, s, t = cube_lookup(-(d.reshape(-1, 3) @ torch.tensor(rot, dtype=torch.float32)))
    c = (torch.arange(S) + 0.5) / S
    assert torch.equal(face.reshape(6, S, S), torch.arange(6)[:, None, None].expand(6, S, S))
    assert torch.allclose(s.reshape(6, S, S), c.expand(6, S, S), atol=1e-5)
    assert torch.allclose(t.reshape(6, S, S), c[:, None].expand(6, S, S), atol=1e-5)
    # Real Matterport poses: the up face really looks up, faces 1-4 run clockwise.
    centres = face_directions(1, rot)[:, 0, 0]  # one pixel per face = the face centre
    assert centres[0, 2] > 0.99 and centres[5, 2] < -0.99
    h1 = math.atan2(*centres[1, :2])
    h2 = math.atan2(*centres[2, :2])
    assert math.isclose((h2 - h1) % (2 * math.pi), math.pi / 2, abs_tol=0.05)


def smooth_colour(d: np.ndarray) -> np.ndarray:
    return (d * 0.5 + 0.5) * 255.0


def test_views_match_the_analytic_scene_and_equirect_agrees():
    rot = yaw(37)
    S = 64
    faces = skybox_from_function(smooth_colour, S, rot)
    He = 128
    pano = np.clip(np.rint(smooth_colour(equirect_directions(He, 2 * He, rot))), 0, 255).astype(np.uint8)
    spec = ViewSpec(40, 30)
    rays = discretized_rays(spec)
    rt = torch.tensor(rot, dtype=torch.float32)[None]
    cube = render_skybox(faces_to_strip(torch.from_numpy(faces).permute(0, 3, 1, 2)[None]).float(), rt, rays)[0]
    eq = render_equirect(torch.from_numpy(pano).permute(2, 0, 1)[None].float(), rt, rays)[0]
    truth = torch.from_numpy(smooth_colour(rays.numpy())).permute(0, 3, 1, 2).float()
    assert (cube - truth).abs().mean() < 1.0
    assert (eq - truth).abs().mean() < 1.5
    assert (cube - eq).abs().mean() < 1.5
    assert (cube - truth).abs().max() < 6.0


def test_view_rays_follow_simulator_conventions():
    rays = view_rays([0.0, math.pi / 2], [0.0, math.radians(30)], ViewSpec(4, 2))
    centre = rays[:, :, :, :].mean(dim=(1, 2))
    centre = centre / centre.norm(dim=-1, keepdim=True)
    assert torch.allclose(centre[0], torch.tensor([0.0, 1.0, 0.0]), atol=1e-5)  # heading 0 -> +y
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    assert torch.allclose(centre[1], torch.tensor([c, 0.0, s]), atol=1e-5)  # heading 90, up 30
    assert rays[0, 0, 0, 0] < 0 and rays[0, 0, 0, 2] > 0  # top-left pixel: left (-x) and up


def test_strip_and_faces_read_the_same(tmp_path):
    faces = skybox_from_function(smooth_colour, 32)
    folder = tmp_path / "scanX" / "matterport_skybox_images"
    write_skybox(folder, "panoA", faces, strip=False, quality=100)
    write_skybox(folder, "panoB", faces, strip=True, quality=100)
    a = load_skybox(tmp_path, "scanX", "panoA").astype(int)
    b = load_skybox(tmp_path, "scanX", "panoB").astype(int)
    assert a.shape == b.shape == (6, 32, 32, 3)
    assert np.abs(a - faces).mean() < 2 and np.abs(b - faces).mean() < 2
    assert load_skybox(tmp_path, "scanX", "panoA", face_size=16).shape == (6, 16, 16, 3)


def test_missing_face_names_the_file(tmp_path):
    faces = colour_faces(8)
    folder = tmp_path / "scanX" / "matterport_skybox_images"
    write_skybox(folder, "panoA", faces)
    (folder / "panoA_skybox3_sami.jpg").unlink()
    with pytest.raises(DataError, match="panoA_skybox3_sami.jpg"):
        load_skybox(tmp_path, "scanX", "panoA")
    (folder / "panoC_skybox_small.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="panoC_skybox_small.jpg"):
        load_skybox(tmp_path, "scanX", "panoC")


def test_views_cli_writes_36_pngs(tmp_path):
    from PIL import Image

    from vln_clip.cli.main import main

    faces = colour_faces(16)
    write_skybox(tmp_path / "sky" / "scanX" / "matterport_skybox_images", "panoA", faces, quality=100)
    rc = main(["features", "views", "--skybox-dir", str(tmp_path / "sky"), "--scan", "scanX",
               "--viewpoint", "panoA", "--out", str(tmp_path / "v"), "--width", "32", "--height", "24"])
    assert rc == 0
    files = sorted(p.name for p in (tmp_path / "v").glob("*.png"))
    assert files == [f"{i:02d}.png" for i in range(36)]
    img = np.asarray(Image.open(tmp_path / "v" / "15.png"))
    assert img.shape == (24, 32, 3) and face_of(img[12, 16]) == 2
    direct = panorama_views("skybox", "scanX", "panoA", CANONICAL_ROTATION, ViewSpec(32, 24), tmp_path / "sky")
    assert np.array_equal(direct[15], img)


def test_equirect_files_render_like_the_skybox(tmp_path):
    from PIL import Image

    rot = yaw(-20)
    faces = skybox_from_function(smooth_colour, 64, rot)
    write_skybox(tmp_path / "scanX" / "matterport_skybox_images", "panoA", faces, quality=100)
    pano = np.clip(np.rint(smooth_colour(equirect_directions(128, 256, rot))), 0, 255).astype(np.uint8)
    (tmp_path / "scanX" / "equirect_images").mkdir(parents=True)
    Image.fromarray(pano).save(tmp_path / "scanX" / "equirect_images" / "panoA.png")
    spec = ViewSpec(40, 30)
    a = panorama_views("skybox", "scanX", "panoA", rot, spec, tmp_path).astype(float)
    b = panorama_views("equirect", "scanX", "panoA", rot, spec, tmp_path).astype(float)
    assert np.abs(a - b).mean() < 1.5
    Image.fromarray(pano[:, :200]).save(tmp_path / "scanX" / "equirect_images" / "panoA.png")
    with pytest.raises(DataError, match="twice as wide"):
        panorama_views("equirect", "scanX", "panoA", rot, spec, tmp_path)
    with pytest.raises(DataError, match="equirect_images"):
        panorama_views("equirect", "scanX", "panoB", rot, spec, tmp_path)
