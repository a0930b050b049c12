"""The collectives of data-parallel training, on the CPU with gloo (two processes)."""

from __future__ import annotations

import json

import torch

from meshtryoshka_train.distributed import Distributed, shard_slice


def test_shards_cover_the_batch_once_in_order():
    for count in (1, 5, 16):
        for world in (1, 2, 3, 8):
            parts = [shard_slice(count, r, world) for r in range(world)]
            covered = [i for p in parts for i in range(count)[p]]
            assert covered == list(range(count))
            sizes = [len(range(count)[p]) for p in parts]
            assert max(sizes) - min(sizes) <= 1


def test_a_single_process_is_not_distributed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    single = Distributed.from_environment(use_cuda=False)
    assert not single.enabled and single.is_main and single.world_size == 1
    x = torch.ones(3, requires_grad=True)
    (x * 2).sum().backward()
    extra = torch.tensor([1.5])
    assert single.sum_gradients([x], extra) is extra and torch.equal(x.grad, torch.full((3,), 2.0))
    single.check_same("anything", [1, 2])
    single.barrier()


WORKER = """
import json, sys
import torch
from meshtryoshka_train.distributed import Distributed

group = Distributed.from_environment(use_cuda=False, timeout=60)
rank = group.rank
a = torch.zeros(2, 3, requires_grad=True)
b = torch.zeros(4, requires_grad=True)  # no gradient on rank 1
c = torch.zeros(2, requires_grad=True)  # no gradient on any rank
loss = (a * (rank + 1)).sum() + (b.sum() if rank == 0 else 0)
loss.backward()
extra = group.sum_gradients([a, b, c], torch.tensor([float(rank), 1.0]))
group.check_same("a shared value", [7, 8])
try:
    group.check_same("the rank", [rank])
    disagreement = None
except RuntimeError as error:
    disagreement = str(error)
result = [rank, a.grad.tolist(), b.grad.tolist(), extra.tolist(), disagreement, c.grad is None]
open(sys.argv[1] + f"/rank{rank}.json", "w").write(json.dumps(result))
group.close()
"""


def test_gradients_and_extras_are_summed_and_disagreements_raise_on_every_rank(tmp_path, torchrun):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    torchrun(str(script), str(tmp_path))
    for rank in range(2):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got[0] == rank
        assert got[1] == [[3.0] * 3] * 2  # 1 + 2
        assert got[2] == [1.0] * 4  # rank 0's only
        assert got[3] == [1.0, 2.0]
        assert "disagree about the rank: rank 0: [0.0]; rank 1: [1.0]" in got[4]
        assert got[5]  # Adam skips it, as in one process
