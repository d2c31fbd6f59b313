"""The training loop under ``torchrun``: process groups, DDP wrapping, rank-0 output.

Launch any :func:`vln_clip.train.fit` program with torchrun and it becomes data parallel::

    torchrun --nproc_per_node 2 -m vln_clip.train.example --out runs/toy          # one machine
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d \\
             --rdzv_endpoint HOST:29500 --rdzv_id RUN -m ...                       # two machines

Nothing here is home-made: torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the
rendezvous (``MASTER_ADDR``/``MASTER_PORT``), :func:`init_from_env` calls
``torch.distributed.init_process_group`` with ``init_method="env://"`` (gloo on CPU, NCCL on
CUDA), models are wrapped in :class:`torch.nn.parallel.DistributedDataParallel` (which
averages gradients across ranks during ``backward``). Only rank 0 writes checkpoints,
TensorBoard and progress; metrics are averaged across ranks; the random states of every
rank are gathered into the checkpoint so a resumed torchrun job continues exactly.

Equivalence: with the data order sharded by rank (:class:`~vln_clip.train.loop.DataOrder`
gives rank ``r`` rows ``r, r + W, ...`` of each global batch) and losses that are means over
the batch, W processes with per-rank batch B/W compute the same update as one process with
batch B (up to float summation order; ``tests/test_train_core.py`` checks 1e-5).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job (rank 0 of 1 outside torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def current() -> DistInfo:
    """This process's rank and world size (from the initialised process group, if any)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                        dist.get_backend())
    return DistInfo()


def init_from_env(device: str = "cpu", timeout_s: float = 1800.0) -> tuple[DistInfo, torch.device]:
    """Join the torchrun job described by the environment; returns (info, this rank's device).

    gloo for CPU devices, NCCL for CUDA (each rank on ``cuda:LOCAL_RANK``). Outside torchrun
    (``WORLD_SIZE`` unset or 1) nothing is initialised and ``device`` is returned unchanged.
    """
    dev = torch.device(device)
    if env_world_size() <= 1:
        return current(), dev
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"device_id": dev} if dev.type == "cuda" else {}
        dist.init_process_group(backend=backend, init_method="env://",
                                timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
    return current(), dev


def shutdown() -> None:
    """Leave the process group (after a final barrier)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_models(models: dict[str, torch.nn.Module], device: torch.device,
                find_unused_parameters: bool = False) -> dict[str, torch.nn.Module]:
    """DDP wrappers of the models that have trainable parameters (others are returned as is).

    DDP broadcasts rank 0's parameters and buffers when wrapping, so every rank starts from
    the same model whatever its own initialisation drew.
    """
    if not current().distributed:
        return dict(models)
    out: dict[str, torch.nn.Module] = {}
    for name, model in models.items():
        if any(p.requires_grad for p in model.parameters()):
            ids = [device.index] if device.type == "cuda" else None
            out[name] = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=ids, find_unused_parameters=find_unused_parameters)
        else:
            out[name] = model
    return out


def _reduce_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_mean(values: dict[str, float]) -> dict[str, float]:
    """Average ``{key: float}`` over ranks (every rank must pass the same keys)."""
    info = current()
    if not info.distributed or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= info.world_size
    return {k: float(v) for k, v in zip(keys, t.tolist())}


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on at least one (e.g. one rank got SIGINT)."""
    if not current().distributed:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_reduce_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (in rank order) on every rank; ``[obj]`` outside torchrun."""
    info = current()
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(timeout_s: float = 600.0) -> None:
    """Wait for every rank; on gloo a rank missing for ``timeout_s`` raises naming that rank."""
    if not current().distributed:
        return
    if dist.get_backend() == "gloo":
        dist.monitored_barrier(timeout=datetime.timedelta(seconds=timeout_s))
    else:
        dist.barrier(device_ids=[torch.cuda.current_device()])
