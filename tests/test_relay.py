"""The relay's gradients equal single-process gradients (gloo, CPU, real DeepSpeed engines, ZeRO 0/1/2), and so
do the gather handoff's (the localization head over the whole sequence, a causal head gathered).

Each case runs tests/relay_check.py under torchrun; see that file for what is compared.
"""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize("nproc, sp", [(2, 2), (4, 4), (4, 2)], ids=["sp2", "sp4", "dp2xsp2"])
def test_relay_gradients_equal_single_process(nproc, sp):
    env = dict(os.environ, OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={nproc}", "tests/relay_check.py", str(sp)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0, (rows, proc.stderr[-3000:])
    heads = {"linear", "lstm", "gru", "tcn", "transformer"}  # linear: stateless, nothing handed on
    gathered = {("actionformer", "gather", z) for z in (0, 1, 2)} | {("actionformer_attention", "gather", 0),
                                                                     ("lstm", "gather", 0)}
    assert {(r["head"], r["handoff"], r["zero"]) for r in rows} == \
        {(h, m, z) for h in heads for m in ("exact", "detached") for z in (0, 1, 2)} | gathered
    assert all(r["sp"] == sp and r["dp"] == nproc // sp and r["max_rel_err"] <= 1e-5 for r in rows), rows



def test_one_pass_at_sp1_equals_the_relay_bitwise(engine_check):
    """At sp=1 a step is one forward and one engine.backward(loss) (the default); over 3 real steps (dropout on,
    so the RNG is used) it gives the weights, losses, accuracy counts and carried state of the relay's two
    passes, bit for bit."""
    rows = [r for r in engine_check if r["check"] == "one_pass"]
    assert [r["head"] for r in rows] == ["lstm", "linear"]
    for r in rows:
        assert r["one_pass_flags"] == [True, False], r
        assert r["weights_equal"] and r["rows_equal"] and r["states_equal"], r
        trained_one, trained_relay, tensors = r["tensors_trained"]
        assert trained_one == trained_relay == tensors, r  # every tensor moved: the comparison is not of idle weights
