"""The batch script's teardown after srun failed: requeue the job from its latest checkpoint if a task died or
was stranded by one that did (launch/job.py), not if the run itself failed.

    python -m launch.recover FOLDER_TEMPLATE SRUN_STATUS      # FOLDER_TEMPLATE: submitit's, with %j

A run that fails (a config, data or code error) leaves a result file with its error on the task that raised
it: that is final, and requeuing would only fail again. A task killed by a signal (OOM killer, a node fault,
SIGKILL) writes nothing, and its peers leave with LOST_PEER_EXIT and nothing written; then the job is requeued
through the same TrainJob.checkpoint() as a preemption, so the same bound (--max-requeues) counts both.
srun's own lines in task 0's error log name the task that died.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from framework.entry import entry_point

from .job import ATTEMPT_MARK, LOST_PEER_EXIT, log


def failures(folder: str, job_id: str, ntasks: int) -> list[tuple[int, str]]:
    """(task, error line) of every task that left an error result: the run itself failed there."""
    from submitit.core import utils

    out = []
    for task in range(ntasks):
        f = utils.JobPaths(folder, job_id=job_id, task_id=task).result_pickle
        if f.is_file():
            outcome, value = utils.pickle_load(f)
            if outcome == "error":
                lines = [ln for ln in str(value).strip().splitlines() if ln.strip()]
                out.append((task, lines[-1] if lines else "error"))
    return out


def deaths(stderr: Path) -> list[str]:
    """srun's reports of this attempt's tasks that ended abnormally, except those that left because a peer
    was lost: `vtnode2: task 1: Killed`."""
    text = stderr.read_text(errors="replace") if stderr.is_file() else ""
    text = text[text.rfind(ATTEMPT_MARK):] if ATTEMPT_MARK in text else text
    found = re.findall(r"srun: error: (\S+): tasks? ([\d,\-]+): (.+)", text)
    return [f"{node}: task {tasks}: {what.strip()}" for node, tasks, what in found
            if what.strip() != f"Exited with exit code {LOST_PEER_EXIT}"]


@entry_point
def main(argv: list[str] | None = None) -> int:
    import submitit
    from submitit.core.utils import DelayedSubmission, JobPaths

    folder, status = (argv if argv is not None else sys.argv[1:])[:2]
    env = submitit.JobEnvironment()
    paths = JobPaths(folder, job_id=env.job_id, task_id=0)
    failed = failures(folder, env.job_id, env.num_tasks)
    if failed:
        task, line = failed[0]
        log(f"not requeuing: the run failed on task {task}: {line}")
        return int(status)
    died = deaths(paths.stderr)
    what = "; ".join(died) if died else f"srun exited with status {status}"
    log(f"the job step ended abnormally: {what}")
    delayed = DelayedSubmission.load(paths.submitted_pickle)
    again = delayed.function.checkpoint()  # the same bound as preemptions; logs the requeue or why not
    if again is None:
        return int(status)
    again.set_timeout(delayed._timeout_min, delayed._timeout_countdown)
    tmp = paths.submitted_pickle.with_suffix(".tmp")
    again.dump(tmp)
    tmp.replace(paths.submitted_pickle)  # what the requeued job will run: trainer.resume=auto, one more requeue
    subprocess.run(["scontrol", "requeue", env.job_id], check=True, timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
