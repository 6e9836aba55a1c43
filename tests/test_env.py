import pytest

from framework.env import EnvironmentError_, check_master, detect


def test_torchrun_environment():
    env = detect({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "node1", "MASTER_PORT": "29500"})
    assert (env.rank, env.world_size, env.local_rank, env.master_addr, env.master_port, env.launcher) == \
        (1, 4, 1, "node1", 29500, "torchrun")


def test_partial_torchrun_environment_is_refused():
    with pytest.raises(EnvironmentError_, match="WORLD_SIZE"):
        detect({"RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "x", "MASTER_PORT": "1"})


def test_slurm_environment():
    env = detect({"SLURM_PROCID": "3", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_NODELIST": "gpu17",
                  "SLURM_JOB_ID": "1234"})
    assert (env.rank, env.world_size, env.local_rank, env.master_addr, env.launcher) == (3, 8, 1, "gpu17", "slurm")
    assert env.master_port == 20000 + 1234


def test_partial_slurm_environment_is_refused():
    with pytest.raises(EnvironmentError_, match="SLURM_LOCALID"):
        detect({"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "n1"})


def test_single_process():
    env = detect({})
    assert (env.rank, env.world_size, env.launcher) == (0, 1, "single")


TORCHRUN = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "node1", "MASTER_PORT": "29500"}
SLURM = {"SLURM_PROCID": "3", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_NODELIST": "gpu[17-18]"}


@pytest.mark.parametrize("environ, single", [
    ({**TORCHRUN, "LOCAL_WORLD_SIZE": "4"}, True),
    ({**TORCHRUN, "LOCAL_WORLD_SIZE": "2"}, False),  # 2 nodes × 2
    (TORCHRUN, False),  # not stated: assume several machines
    ({**SLURM, "SLURM_JOB_NUM_NODES": "1"}, True),
    ({**SLURM, "SLURM_JOB_NUM_NODES": "2"}, False),
    ({}, True),
])
def test_single_node_is_known_from_the_launcher(environ, single):
    """Whether all ranks share one machine decides if the CPU shared-memory all-reduce may be used."""
    assert detect(environ).single_node is single


def test_a_master_that_does_not_resolve_is_one_line():
    env = detect({**SLURM, "SLURM_JOB_NODELIST": "no-such-node.invalid", "SLURM_NTASKS": "2", "SLURM_PROCID": "1"})
    with pytest.raises(EnvironmentError_) as err:
        check_master(env)
    assert str(err.value).startswith("the master address no-such-node.invalid (the first host of "
                                     "SLURM_JOB_NODELIST) does not resolve on ")
    assert "\n" not in str(err.value)

