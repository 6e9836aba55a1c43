"""framework/grad_reduce.py: gradients summed through DeepSpeed's shared-memory kernel on CPU, or not
reduced at all on one rank, give the numbers of DeepSpeed's own reduction bitwise; replicas stay bitwise
equal; nothing is left in /dev/shm; DeepSpeed's path wherever the kernel cannot serve."""
import json
import os
import subprocess
import sys

import pytest

from framework.grad_reduce import SEGMENT_BYTES, machine_unusable, unusable
from tests.conftest import REPO

ROOM = 10 * SEGMENT_BYTES


@pytest.mark.parametrize("nproc, path", [(2, "shared memory"), (1, "none (one rank)")])
def test_reduction_equals_deepspeeds_own(nproc, path):
    if nproc > 1 and (why := machine_unusable(nproc, single_node=True)):
        pytest.skip(f"the shared-memory kernel cannot run here: {why}")
    env = dict(os.environ, OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                           "tests/grad_reduce_check.py"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("[")))
    for r in ranks:
        assert r["paths"] == [path, "deepspeed"]
        assert r["segments_left"] == []  # unlinked once mapped: a killed run leaves no 70 MB files behind
        assert r["grads_equal"] and r["weights_equal"], r  # bitwise, against DeepSpeed's own reduction
        assert r["grads_equal_across_ranks"] and r["replicas_equal"], r


@pytest.mark.parametrize("world, single_node, cores, shm_free, why", [
    (1, True, 2, ROOM, "one rank"),
    (4, False, 8, ROOM, "several machines"),
    (4, True, 2, ROOM, "4 ranks on 2 cores"),
    (2, True, 2, SEGMENT_BYTES, "/dev/shm has 70 MiB free, needs 140"),
])
def test_falls_back_where_the_kernel_cannot_serve(world, single_node, cores, shm_free, why):
    assert why in unusable(world, single_node, cores, shm_free)


def test_used_where_it_can_serve():
    assert unusable(2, True, 2, ROOM) is None
