"""The BN "cheating" effect (Rivoir et al.) on synthetic anticipation data where nothing before an instrument's
appearance predicts it: trainable BatchNorm trained on chunks of consecutive frames and scored with each
chunk's own statistics anticipates better than it can honestly; GroupNorm cannot cheat. Small, fast settings:
`python -m bench.bn_cheating` reports the full numbers (docs/BENCHMARKS.md), where the cheating BN also beats
GroupNorm; at this test's 150 steps that margin is within the run-to-run spread, so it is not asserted here."""
import json
import subprocess
import sys

from tests.conftest import REPO


def test_batchnorm_sees_the_future_through_its_statistics_and_groupnorm_does_not(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench.bn_cheating", "--steps", "150", "--videos", "10",
                           "--size", "16", "--work", str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith('{"benchmark"')))
    bn_train, bn_eval = r["bn"]["train"]["wMAE"], r["bn"]["eval"]["wMAE"]
    gn_train, gn_eval = r["gn"]["train"]["wMAE"], r["gn"]["eval"]["wMAE"]
    assert bn_train < 0.95 * bn_eval, r  # the batch statistics carry the later frames of the chunk
    assert gn_train == gn_eval, r  # GroupNorm: each frame normalised on its own, no mode makes a difference
