"""Data-parallel training across processes with torch.distributed, as `torchrun` launches it.

``torchrun --nproc-per-node N -m meshtryoshka_train --experiment ...`` starts N processes
(ranks). Every rank holds the same field, extracts the same shells and renders its share of
each step's batch of images; the gradients are summed with one flattened ``all_reduce`` per
step, so every rank takes the same optimizer step and the fields stay identical. The global
batch is drawn by the same seeded generator on every rank, so it does not depend on N, and a
checkpoint (which holds nothing per rank) resumes on any number of ranks. Rank 0 alone writes
logs, checkpoints, evaluations and meshes. NCCL on GPUs (one GPU per rank: ``cuda:LOCAL_RANK``),
gloo on CPUs. A rank that dies makes the others fail within `timeout` seconds (torchrun also
stops them at once); nothing hangs.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["Distributed", "DistributedError", "shard_slice", "torchrun_ranks"]


class DistributedError(RuntimeError):
    """A collective failed: another rank died or stopped, or it waited past the timeout."""


def torchrun_ranks() -> tuple[int, int, int] | None:
    """``(rank, world size, local rank)`` from torchrun's environment (``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``), or None when torchrun did not start this process."""
    if "RANK" not in os.environ:
        return None
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def shard_slice(count: int, rank: int, world_size: int) -> slice:
    """Rank `rank`'s contiguous part of `count` items: sizes differ by at most one, the first
    ``count % world_size`` ranks take one more (some parts are empty when count < world)."""
    base, extra = divmod(count, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


@dataclass
class Distributed:
    """Which process this is, and the collectives the trainer needs (no-ops for one process).

    Build with `Distributed.from_environment` (torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``)
    or `Distributed()` for a single process.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    """"nccl" or "gloo" once the process group is initialized; None for a single process."""
    timeout: float = 0.0
    """Seconds a collective waits for the other ranks (`from_environment`'s `timeout`)."""

    @classmethod
    def from_environment(cls, use_cuda: bool, timeout: float = 600.0) -> Distributed:
        """Join torchrun's process group when ``WORLD_SIZE`` > 1 is set, else one process.

        use_cuda: NCCL, and this rank's device is ``cuda:LOCAL_RANK``; else gloo.
        timeout: seconds a collective may wait for the other ranks before failing.

        ``MESHTRYOSHKA_PROCESS_GROUP=always`` makes a one-rank torchrun (``WORLD_SIZE=1``)
        join a process group of one too, so the collectives run (e.g. NCCL on one GPU, for
        the benchmark's baseline); without it one rank trains as a plain single process.
        """
        launched = torchrun_ranks()
        always = os.environ.get("MESHTRYOSHKA_PROCESS_GROUP") == "always"
        if launched is None or (launched[1] <= 1 and not always):
            return cls()
        rank, world, local = launched
        backend = "nccl" if use_cuda else "gloo"
        if use_cuda:
            if local >= torch.cuda.device_count():
                raise RuntimeError(
                    f"rank {rank} wants cuda:{local} but this machine has "
                    f"{torch.cuda.device_count()} GPU(s): start at most that many processes per "
                    "node (torchrun --nproc-per-node)"
                )
            torch.cuda.set_device(local)
        if not dist.is_initialized():
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
        return cls(rank, world, local, backend, timeout)

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    def cuda_device(self) -> torch.device:
        """This rank's GPU, ``cuda:LOCAL_RANK``."""
        return torch.device(f"cuda:{self.local_rank}")

    def shard(self, count: int) -> slice:
        """This rank's part of `count` batch items (`shard_slice`)."""
        return shard_slice(count, self.rank, self.world_size)

    def sum_gradients(self, tensors: Sequence[Tensor], extra: Tensor) -> Tensor:
        """Sum the ``.grad`` of `tensors` and the float vector `extra` over the ranks, in place.

        One flattened ``all_reduce`` (float32). A rank without a gradient for a tensor
        contributes zeros; a tensor that has no gradient on any rank keeps ``.grad = None``
        (Adam then skips it, as it does in one process). Returns the summed `extra` (same
        shape, on the CPU: one copy to the host). A no-op for one process (returns `extra`).
        """
        if not self.enabled:
            return extra
        had = [0.0 if t.grad is None else 1.0 for t in tensors]  # summed: ranks with one
        grads = []
        for t in tensors:
            if t.grad is None:
                t.grad = torch.zeros_like(t)
            grads.append(t.grad.reshape(-1))
        like = grads[0] if grads else extra.float()
        flags = torch.tensor(had, dtype=like.dtype, device=like.device)
        flat = torch.cat([*grads, extra.reshape(-1).to(like), flags])
        self._collective("the gradient all_reduce", lambda: dist.all_reduce(flat))
        start = 0
        for t, g in zip(tensors, grads, strict=True):
            t.grad.copy_(flat[start : start + g.numel()].view_as(t.grad))
            start += g.numel()
        tail = flat[start:].cpu()  # the one host copy: the summed extra and the flags
        summed = tail[: extra.numel()].view(extra.shape).to(extra.dtype)
        for t, count in zip(tensors, tail[extra.numel() :].tolist(), strict=True):
            if count == 0:
                t.grad = None
        return summed

    def _collective(self, what: str, call) -> None:
        """Run one collective; its failure becomes a `DistributedError` that says why."""
        try:
            call()
        except Exception as error:
            detail = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
            raise DistributedError(
                f"rank {self.rank} of {self.world_size}: {what} failed ({type(error).__name__}"
                + (f": {detail}" if detail else "")
                + "). Another rank died or stopped (its own message says why), or the ranks "
                f"waited longer than train.distributed_timeout = {self.timeout:g} s for each "
                "other; every rank stops"
            ) from error

    def check_same(self, what: str, values: Sequence[int]) -> None:
        """Raise on every rank when the ranks disagree about `values` (e.g. the grid after a
        resolution change): the fields would silently drift apart otherwise."""
        if not self.enabled:
            return
        mine = torch.tensor(list(values), dtype=torch.float64)
        if self.backend == "nccl":
            mine = mine.cuda()
        gathered = [torch.zeros_like(mine) for _ in range(self.world_size)]
        self._collective(f"the check of {what}", lambda: dist.all_gather(gathered, mine))
        rows = [g.tolist() for g in gathered]
        if any(row != rows[0] for row in rows):
            raise RuntimeError(
                f"the ranks disagree about {what}: "
                + "; ".join(f"rank {r}: {row}" for r, row in enumerate(rows))
            )

    def barrier(self) -> None:
        """Wait for every rank (e.g. while rank 0 evaluates or writes a checkpoint)."""
        if not self.enabled:
            return
        if self.backend == "nccl":
            self._collective("a barrier", lambda: dist.barrier(device_ids=[self.local_rank]))
        else:
            self._collective("a barrier", dist.barrier)

    def close(self, wait: bool = False) -> None:
        """Leave the process group. `wait`: first wait for every rank (after a run that ended
        well: rank 0 may still be evaluating), so that all ranks destroy the group together; a
        rank that destroyed it while another was still working aborted at exit now and then
        ("terminate called without an active exception", once in a CI run)."""
        if self.enabled and dist.is_initialized():
            if wait:
                self.barrier()
            dist.destroy_process_group()
