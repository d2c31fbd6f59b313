"""Encoder registry: output shapes for every encoder (random weights), grid size from input size,
agreement with open_clip's own forward at the native size, L2 option, weights errors."""

from __future__ import annotations

import pytest
import torch

from vln_clip.encoders import ENCODERS, get_spec, grid_size, load_encoder
from vln_clip.errors import DataError, MissingResourceError

EXPECTED = {  # name: (pooled dim, grid channels, native input)
    "clip_res50": (1024, 2048, 224),
    "clip_res101": (512, 2048, 224),
    "clip_res50x4": (640, 2560, 288),
    "clip_vit_b32": (512, 768, 224),
    "imagenet_res152": (2048, 2048, 224),
}


_BUILT: dict[str, torch.nn.Module] = {}


def built(name: str) -> torch.nn.Module:
    """Each encoder is built once per test session (construction dominates the runtime)."""
    if name not in _BUILT:
        torch.manual_seed(0)
        _BUILT[name] = load_encoder(name, random_weights=True)
    return _BUILT[name]


@pytest.fixture(scope="module")
def res50():
    return built("clip_res50")


def test_registry_is_the_paper_table():
    assert set(ENCODERS) == set(EXPECTED)
    for name, (pooled, channels, size) in EXPECTED.items():
        spec = get_spec(name)
        assert (spec.pooled_dim, spec.grid_channels, spec.input_size) == (pooled, channels, size)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_shapes_with_random_weights_native_and_non_native(name):
    enc = built(name)
    pooled, channels, _ = EXPECTED[name]
    assert enc.weights == "random"
    with torch.no_grad():
        out = enc(torch.rand(1, 3, 64, 96))  # non-native, non-square
    assert out["pooled"].shape == (1, pooled)
    assert out["grid"].shape == (1, channels, 2, 3)
    assert grid_size(name, 64, 96) == (2, 3)
    assert torch.isfinite(out["pooled"]).all()


def test_quick_gelu_follows_the_weights():
    from vln_clip.encoders import _uses_quick_gelu

    vit = get_spec("clip_vit_b32")
    assert _uses_quick_gelu(vit, None) and _uses_quick_gelu(vit, "openai")
    assert not _uses_quick_gelu(vit, "laion2b_s34b_b79k")  # LAION trained with plain GELU
    acts = {type(m).__name__ for m in built("clip_vit_b32").modules()}
    assert "QuickGELU" in acts  # the OpenAI architecture, also for random weights


def test_grid_sizes_of_the_paper_recipes():
    assert grid_size("clip_res50", 600, 1000) == (18, 31)  # VQA
    assert grid_size("clip_res50x4", 448, 448) == (14, 14)  # captioning
    assert grid_size("clip_res50x4", 288, 288) == (9, 9)
    assert grid_size("clip_vit_b32", 384, 640) == (12, 20)  # pre-training


def test_native_size_matches_open_clip_forward(res50):
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        out = res50(x)
        ref = res50.backbone(res50.normalize(x))  # open_clip's ModifiedResNet.forward (attnpool)
    assert torch.allclose(out["pooled"], ref, atol=1e-5)
    assert out["grid"].shape == (1, 2048, 7, 7)


def test_vit_native_size_matches_open_clip_forward():
    enc = built("clip_vit_b32")
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        ours = enc(x)["pooled"]
        ref = enc.backbone(enc.normalize(x))
    ref = ref[0] if isinstance(ref, tuple) else ref
    assert torch.allclose(ours, ref, atol=1e-5)


def test_uint8_and_float_inputs_agree_and_l2_option(res50):
    img = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        a = res50(img)["pooled"]
        b = res50(img.float() / 255)["pooled"]
        res50.l2_normalize = True
        c = res50(img)["pooled"]
        res50.l2_normalize = False
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(c.norm(dim=-1), torch.ones(1), atol=1e-5)
    assert torch.allclose(c, a / a.norm(dim=-1, keepdim=True), atol=1e-5)


def test_random_weights_are_the_same_in_every_process():
    """torchrun ranks and resumed runs must not mix two random networks."""
    b = built("clip_vit_b32")
    torch.manual_seed(123)  # the caller's RNG state does not matter ...
    state = torch.random.get_rng_state()
    a = load_encoder("clip_vit_b32", random_weights=True)
    assert torch.equal(torch.random.get_rng_state(), state)  # ... and is left untouched
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(v, w), k


def test_unknown_encoder_lists_valid_names():
    with pytest.raises(DataError) as exc:
        load_encoder("clip_res9000", random_weights=True)
    for name in EXPECTED:
        assert name in str(exc.value)


def test_missing_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("VLN_CLIP_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))  # no open_clip / hub cache
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MissingResourceError) as exc:
        load_encoder("clip_res50x4")
    msg = str(exc.value)
    assert "RN50x4.pt" in msg and "--random-weights" in msg and "--weights" in msg
    with pytest.raises(MissingResourceError):
        load_encoder("clip_res50", weights=str(tmp_path / "nope.pt"))


def test_checkpoint_file_round_trip(tmp_path, monkeypatch):
    """A checkpoint in $VLN_CLIP_WEIGHTS (or passed as a path) is loaded strictly and recorded."""
    from vln_clip.encoders import resolve_weights

    ref = built("clip_vit_b32")
    torch.manual_seed(3)
    state = {f"visual.{k}": v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v
             for k, v in ref.backbone.state_dict().items()}
    state["logit_scale"] = torch.tensor(4.6)  # other towers' keys in a full CLIP checkpoint are ignored
    path = tmp_path / "ViT-B-32.pt"
    torch.save(state, path)
    enc = load_encoder("clip_vit_b32", weights=str(path))
    assert enc.weights.startswith("file:")
    for k, v in enc.backbone.state_dict().items():
        assert torch.equal(v, state[f"visual.{k}"]), k
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(enc(x)["pooled"], ref(x)["pooled"], atol=1e-3)
    monkeypatch.setenv("VLN_CLIP_WEIGHTS", str(tmp_path))
    found, label = resolve_weights(get_spec("clip_vit_b32"), None, False)  # default tag via $VLN_CLIP_WEIGHTS
    assert found == path and str(path) in label
    with pytest.raises(DataError, match="does not fit RN50"):
        load_encoder("clip_res50", weights=str(path))  # wrong architecture
