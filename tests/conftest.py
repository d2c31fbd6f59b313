"""Shared fixtures: the real data in ../shared (skipped cleanly when absent) and tiny worlds."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VLN_CLIP_SHARED", REPO.parent / "shared"))
SHARED_CONNECTIVITY = SHARED / "data" / "matterport" / "connectivity"
SHARED_R2R = SHARED / "data" / "r2r"


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models run fastest on one intra-op thread; two threads on a busy 2-core machine spin and
    run many times slower (measured 10-30x by several test files)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Graph tables and other caches go to a per-session temp folder, not ~/.cache."""
    os.environ["VLN_CLIP_CACHE"] = str(tmp_path_factory.mktemp("vln_clip_cache"))


@pytest.fixture(scope="session")
def shared_connectivity() -> Path:
    if not (SHARED_CONNECTIVITY / "scans.txt").exists():
        pytest.skip("../shared/data/matterport/connectivity is not present")
    return SHARED_CONNECTIVITY


@pytest.fixture(scope="session")
def shared_r2r_train() -> Path:
    path = SHARED_R2R / "R2R_train.json"
    if not path.exists():
        pytest.skip("../shared/data/r2r/R2R_train.json is not present")
    return path


@pytest.fixture(scope="session")
def shared_r2r_test() -> Path:
    path = SHARED_R2R / "R2R_test.json"
    if not path.exists():
        pytest.skip("../shared/data/r2r/R2R_test.json is not present")
    return path
