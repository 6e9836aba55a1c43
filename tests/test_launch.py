"""vt-launch: sweeps, option checks, sbatch parameters, how a local run reports a failed rank (the SLURM
submissions themselves: test_slurm.py)."""
import pytest

from framework.config import ConfigError
from launch import cli, sweep
from launch.slurm import SlurmOptions, error_text, executor_parameters, teardown
from tests.conftest import run_training, tiny_overrides


def test_sweep_gives_every_combination_its_own_run_folder():
    points = sweep.points(["name=sw", "trainer.lr=1e-3,3e-4", "model=resnet18_lstm,resnet18_gru"])
    assert [(p.cfg.trainer.lr, p.cfg.model.head) for p in points] == [
        (1e-3, "lstm"), (1e-3, "gru"), (3e-4, "lstm"), (3e-4, "gru")]
    assert [p.cfg.run_dir for p in points] == [f"runs/sw/{i}" for i in range(4)]
    assert [p.cfg.logging.mlflow.run_name for p in points] == [f"sw-{i}" for i in range(4)]


def test_single_run_and_distinct_swept_folders_are_left_alone():
    assert [p.overrides for p in sweep.points(["name=one"])] == [["name=one"]]
    points = sweep.points(["name=a,b"])
    assert [p.cfg.run_dir for p in points] == ["runs/a", "runs/b"]


@pytest.mark.parametrize("overrides, message", [
    (["trainer.lr=1e-3,oops"], "trainer.lr: Value 'oops'"),
    (["trainer.lr=(("], "cannot parse override 'trainer.lr=\\(\\(': mismatched input"),
])
def test_bad_sweeps_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        sweep.points(overrides)


def test_slurm_options_become_sbatch_parameters():
    args, _ = cli.parser().parse_known_args(
        ["--cluster", "slurm", "--nodes", "2", "--gpus-per-node", "8", "--cpus-per-task", "10", "--mem-gb", "400",
         "-p", "gpu", "-A", "proj", "--qos", "high", "-C", "h100", "--time", "90", "--sbatch", "exclusive",
         "--sbatch", "reservation=big", "--setup", "source venv/bin/activate"])
    params = executor_parameters(cli.slurm_options(args), "demo")
    assert params == dict(nodes=2, ntasks_per_node=8, gpus_per_node=8, cpus_per_task=10, mem="409600MB",
                          partition="gpu", account="proj", qos="high", constraint="h100", time=90,
                          signal_delay_s=120, job_name="demo", setup=["source venv/bin/activate"],
                          additional_parameters={"exclusive": True, "reservation": "big"},
                          srun_args=["--kill-on-bad-exit=1"], teardown=teardown("%j"))


def test_cpu_job_runs_nproc_tasks_without_gpus():
    args, _ = cli.parser().parse_known_args(["--cluster", "slurm", "--nproc", "4"])
    params = executor_parameters(cli.slurm_options(args), "x")
    assert params["ntasks_per_node"] == 4 and "gpus_per_node" not in params and "mem" not in params
    assert SlurmOptions().max_requeues == 3


@pytest.mark.parametrize("args, message", [
    (["--partition", "gpu", "name=x"], "vt-launch: error: --partition: only with --cluster slurm"),
    (["--cluster", "slurm", "--nproc", "4", "--gpus-per-node", "8"], "one process per GPU"),
    (["data.bogus=1"], "config error: data.bogus"),
])
def test_mistakes_stop_with_one_line(args, message, capsys):
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_slurm_without_sbatch_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert cli.main(["--cluster", "slurm", "name=x"]) == 2
    assert "`sbatch` not found" in capsys.readouterr().err


def test_error_text_is_the_jobs_own_exception():
    framed = ("Job (task=0) failed during processing with trace:\n----------------------\n"
              "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
              "framework.data.manifest.ManifestError: no manifest.json in /nowhere\n"
              "----------------------\nYou can check full logs with 'job.stderr(0)'")
    assert error_text(RuntimeError(framed)) == "framework.data.manifest.ManifestError: no manifest.json in /nowhere"
    assert error_text(RuntimeError("Job 3 has not produced any output")) == "Job 3 has not produced any output"


def test_world_size_is_checked_against_the_config(capsys):
    assert cli.main(["--cluster", "slurm", "--nodes", "1", "--nproc", "3", "trainer.sp=2"]) == 2
    assert "trainer.sp=2 must divide the number of processes (3)" in capsys.readouterr().err


def test_swept_folders_replace_a_given_run_dir():
    points = sweep.points(["run_dir=/x/y", "trainer.lr=1e-3,3e-4"])
    assert [p.overrides for p in points] == [
        ["trainer.lr=0.001", "run_dir=/x/y/0", "logging.mlflow.run_name=default-0"],
        ["trainer.lr=0.0003", "run_dir=/x/y/1", "logging.mlflow.run_name=default-1"]]


def test_a_failed_local_run_says_which_rank_ended_and_no_launcher_traceback(tiny_data, tmp_path):
    """vt-launch runs torchrun's agent in its own process: a rank's failure is the rank's own line, then one
    line of the launcher's, status 1 (as torchrun's)."""
    proc = run_training(tiny_overrides(tiny_data, tmp_path / "run", "trainer.lr=1e38", "trainer.max_steps=4",
                                       "trainer.eval=false", "logging.mlflow.enabled=false"), nproc=1)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "vt-train: stopped: non-finite loss or gradient norm at step" in proc.stderr
    assert "vt-launch: rank 0 ended with exit code 1" in proc.stderr
    assert "Traceback" not in proc.stderr and "ChildFailedError" not in proc.stderr, proc.stderr[-3000:]
