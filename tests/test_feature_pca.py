"""PCA reduction of a feature store: fitted on training scans only, whitened, atomic, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vln_clip.cli.main import main
from vln_clip.errors import DataError
from vln_clip.features.pca import fit_pca, write_pca_store
from vln_clip.features.store import FeatureStore, FeatureWriter


def _store(path, data: dict[str, np.ndarray], dim: int) -> None:
    with FeatureWriter(path, dim, {"encoder": "clip_vit_b32", "weights": "random"}, dtype="float32") as w:
        for key, feats in data.items():
            scan, vp = key.split("_", 1)
            w.write(scan, vp, feats)


@pytest.fixture()
def source(tmp_path):
    """Train scans hold rank-3 data plus a constant offset; the val scan holds wild values."""
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(3, 16))
    data = {}
    for scan in ("trainA", "trainB"):
        for v in range(6):
            coef = rng.normal(size=(36, 3)) * np.array([5.0, 2.0, 0.5])
            data[f"{scan}_vp{v}"] = (coef @ basis + 7.0).astype(np.float32)
    for v in range(3):
        data[f"valC_vp{v}"] = rng.normal(scale=100.0, size=(36, 16)).astype(np.float32)
    path = tmp_path / "src.h5"
    _store(path, data, 16)
    return path, data, basis


def test_whitened_components_of_the_training_scans(source, tmp_path):
    path, data, basis = source
    out = tmp_path / "pca.h5"
    proj = write_pca_store(path, out, ["trainA", "trainB"], dim=3)
    assert proj.explained == pytest.approx(1.0, abs=1e-6)  # rank 3 data: 3 components keep everything
    assert proj.fitted_views == 2 * 6 * 36
    with FeatureStore(out) as st:
        assert st.dim == 3 and len(st) == len(data)
        y = np.concatenate([st.get(*k.split("_", 1)) for k in data if k.startswith("train")])
        assert np.abs(y.mean(0)).max() < 1e-4  # centred on the training views
        np.testing.assert_allclose(np.cov(y.T, bias=True), np.eye(3), atol=1e-3)  # whitened
        # the components span the generating basis
        q, _ = np.linalg.qr(basis.T)
        np.testing.assert_allclose(np.linalg.norm(q.T @ proj.components.T, axis=0), 1.0, atol=1e-6)
        assert st.encoder == "clip_vit_b32" and st.attrs["pca_fit_scans"] == "trainA,trainB"
        assert st.attrs["pca_source_dim"] == 16 and st.attrs["weights"] == "random"
    assert not (tmp_path / "pca.h5.partial").exists()


def test_val_scans_do_not_change_the_projection(source, tmp_path):
    path, data, _ = source
    with FeatureStore(path) as st:
        a = fit_pca(st, ["trainA", "trainB"], 3)
        assert not st._cache  # one pass over the store keeps nothing: memory stays D x D
    changed = dict(data)
    changed["valC_vp0"] = changed["valC_vp0"] * 50 + 3
    other = tmp_path / "other.h5"
    _store(other, changed, 16)
    with FeatureStore(other) as st:
        b = fit_pca(st, ["trainA", "trainB"], 3)
    np.testing.assert_allclose(a.mean, b.mean)
    np.testing.assert_allclose(np.abs(a.components), np.abs(b.components), atol=1e-9)


def test_unwhitened_keeps_variances_and_bad_input_is_named(source, tmp_path):
    path, _, _ = source
    with FeatureStore(path) as st:
        p = fit_pca(st, ["trainA", "trainB"], 2, whiten=False)
        assert np.all(p.scale == 1.0)
        with pytest.raises(DataError, match="no viewpoint of the fitting scans"):
            fit_pca(st, ["nope"], 2)
        with pytest.raises(DataError, match="--dim 40"):
            fit_pca(st, ["trainA"], 40)
    with pytest.raises(DataError, match="overwrite the input"):
        write_pca_store(path, path, ["trainA"], 2)


def test_cli_fits_on_the_split_file_scans(source, tmp_path, capsys):
    path, _, _ = source
    split = tmp_path / "R2R_train.json"
    split.write_text(json.dumps([{"distance": 5.0, "scan": s, "path_id": i, "path": ["vp0", "vp1"], "heading": 0.0,
                                  "instructions": ["walk ahead"]} for i, s in enumerate(("trainA", "trainB"))]))
    out = tmp_path / "cli.h5"
    assert main(["features", "pca", "--features", str(path), "--fit-split", str(split), "--dim", "3",
                 "--out", str(out)]) == 0
    assert "fitted on 2 scans (432 views), 100.0% of the variance" in capsys.readouterr().out
    with FeatureStore(out) as st:
        assert st.dim == 3 and st.attrs["pca_fit_scans"] == "trainA,trainB"
