"""A real two-node SLURM cluster on this machine, in a temporary folder: munge, MariaDB, slurmdbd and
slurmctld on the controller (this machine's own namespace), one slurmd per node, each node a network
namespace with its own hostname and address (tests/netns.py), joined to the controller by a bridge.

Used by tests/test_slurm.py (session fixture); also runnable by hand to try `vt-launch --cluster slurm`:

    python -m tests.slurm_cluster /tmp/vt-slurm      # prints `export SLURM_CONF=...`, Ctrl-C stops it

Every daemon runs in the foreground as our child and is stopped by its pid; nothing is installed as a service.
Jobs on the nodes reach each other only over the bridge: the first node's name (the master address a job
derives from SLURM_JOB_NODELIST) resolves to its link address in every node's /etc/hosts, and each rank's
gloo endpoint binds to its own node's address.
Packages are installed with apt only when missing (needs root). The settings are the ones that were found to
work on a container without systemd or cgroups (see shared DESIGN notes): linuxproc process tracking, no task
plugin, accounting in slurmdbd (submitit reads job states with `sacct`), `cred_expire=5` so a requeued job may
start again after 5 s instead of 120 s, and a high-priority partition whose jobs preempt (requeue) the others
after sending them the job's `--signal` (USR2 for submitit jobs).
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from framework.env import free_port
from tests.netns import NetworkUnavailable, Nodes

PACKAGES = ("slurm-wlm", "munge", "slurmdbd", "mariadb-server")
BINARIES = ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "mariadb-install-db", "sbatch", "sacct")


class ClusterUnavailable(RuntimeError):
    """The cluster cannot run here (not root, apt unreachable, a daemon would not start)."""


def ensure_installed() -> None:
    if all(shutil.which(b) or Path("/usr/sbin", b).exists() for b in BINARIES):
        return
    if os.geteuid() != 0:
        raise ClusterUnavailable(f"SLURM is not installed and installing {' '.join(PACKAGES)} needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode:
            raise ClusterUnavailable(f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[-500:]}")


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started the cluster dies, even by SIGKILL,
    so an interrupted test session leaves no daemons behind."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def total_memory_mb() -> int:
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) // 1024


class Cluster:
    """`with Cluster(folder) as c:` starts everything, `c.env` is what a client (sbatch, submitit) needs."""

    name = "vt"

    def __init__(self, folder: Path, nodes: int = 2):
        self.dir = Path(folder).resolve()
        self.host = socket.gethostname().split(".")[0]
        self.nodes = [f"vtnode{i}" for i in range(1, nodes + 1)]
        self.net = Nodes(self.nodes, self.dir)
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.ports = {k: free_port() for k in ("ctld", "slurmd", "dbd", "mysql")}
        self.db_password = secrets.token_hex(8)
        self.startup_seconds = 0.0

    # -- paths ------------------------------------------------------------------------------
    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    @property
    def conf(self) -> Path:
        return self.path("etc", "slurm.conf")

    @property
    def env(self) -> dict:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> "Cluster":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        ensure_installed()
        t0 = time.time()
        for d in ("etc", "munge", "mysql", "state", "log", *(f"spool/{n}" for n in self.nodes)):
            self.path(d).mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)  # munge refuses sockets in group/world-writable folders
        try:
            self.net.up([self.host])
            self.start_munge()
            self.start_mariadb()
            self.write_configs()
            self.start_slurmdbd()
            self.start_slurm()
        except NetworkUnavailable as e:
            self.stop()
            raise ClusterUnavailable(str(e)) from None
        except Exception:
            self.stop()
            raise
        self.startup_seconds = time.time() - t0

    def stop(self) -> None:
        """Cancel what is still queued (its job steps belong to our slurmds), stop our daemons newest first,
        then remove the nodes (every process left in them, their namespaces and links)."""
        if any(name == "slurmctld" for name, _ in self.procs):
            subprocess.run(["scancel", "--user=root"], env=self.env,
                           capture_output=True)
            self.wait_for(lambda: not self.run(["squeue", "-h"], check=False).strip(), 30, "jobs to end",
                          fail=False)
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()
        self.net.down()

    # -- daemons ----------------------------------------------------------------------------
    def spawn(self, name: str, cmd: list[str], node: str | None = None) -> subprocess.Popen:
        """A daemon on the controller, or on `node`."""
        log = open(self.path("log", f"{name}.out"), "ab")
        cmd = self.net.inside(node, cmd) if node else cmd
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
                                preexec_fn=_die_with_parent)
        log.close()
        self.procs.append((name, proc))
        return proc

    def start_munge(self) -> None:
        key = self.path("munge", "munge.key")
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        self.path("munge").chmod(0o755)  # clients need to reach the socket
        self.spawn("munged", ["munged", "-F", "-f", f"--key-file={key}", f"--socket={self.munge_socket}",
                              f"--pid-file={self.path('munge', 'munged.pid')}",
                              f"--log-file={self.path('log', 'munged.log')}",
                              f"--seed-file={self.path('munge', 'munged.seed')}"])
        self.wait_for(lambda: Path(self.munge_socket).exists(), 15, "munged")

    @property
    def munge_socket(self) -> str:
        return str(self.path("munge", "munge.socket"))

    def start_mariadb(self) -> None:
        data, sock = self.path("mysql", "data"), self.path("mysql", "mysqld.sock")
        self.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
                  "--auth-root-authentication-method=socket", "--skip-test-db"])
        self.spawn("mariadbd", ["mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={sock}",
                                "--user=root", "--bind-address=127.0.0.1", f"--port={self.ports['mysql']}",
                                f"--pid-file={self.path('mysql', 'mysqld.pid')}",
                                "--innodb-buffer-pool-size=64M", "--skip-log-bin"])
        self.wait_for(lambda: sock.exists(), 60, "mariadbd")
        # slurmdbd reaches MariaDB over TCP on loopback: it has no setting for a socket path
        sql = (f"CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{self.db_password}'; "
               "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';")
        self.run(["mariadb", "--no-defaults", f"--socket={sock}", "-u", "root", "-e", sql])

    def start_slurmdbd(self) -> None:
        self.spawn("slurmdbd", ["slurmdbd", "-D"])
        self.wait_for(lambda: self.run(["sacctmgr", "-n", "list", "cluster"], check=False, timeout=10) is not None,
                      60, "slurmdbd")
        self.run(["sacctmgr", "-i", "add", "cluster", self.name], check=False)

    def start_slurm(self) -> None:
        self.spawn("slurmctld", ["slurmctld", "-D", "-i"])
        self.wait_for(lambda: "UP" in (self.run(["scontrol", "ping"], check=False) or ""), 60, "slurmctld")
        for node in self.nodes:
            self.spawn(f"slurmd-{node}", ["slurmd", "-D", "-N", node], node=node)
        self.wait_for(lambda: (self.run(["sinfo", "-h", "-N", "-p", "debug", "-o", "%t"], check=False) or "").split()
                      == ["idle"] * len(self.nodes), 60, "slurmd (every node idle)")

    # -- configuration ----------------------------------------------------------------------
    def write_configs(self) -> None:
        self.conf.write_text(self.slurm_conf())
        dbd = self.path("etc", "slurmdbd.conf")  # found next to SLURM_CONF; must be 0600, owned by SlurmUser
        dbd.write_text(self.slurmdbd_conf())
        dbd.chmod(0o600)

    def slurm_conf(self) -> str:
        cpus = max(2, os.cpu_count() or 1)  # 2-task test jobs must fit on one node, even on a 1-core runner
        controller = self.net.addr("controller")  # what the nodes reach the controller and slurmdbd at
        return "\n".join([
            f"ClusterName={self.name}",
            f"SlurmctldHost={self.host}({controller})",
            f"SlurmctldPort={self.ports['ctld']}",
            f"SlurmdPort={self.ports['slurmd']}",
            "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket},cred_expire=5",
            f"StateSaveLocation={self.path('state')}",
            f"SlurmdSpoolDir={self.path('spool')}/%n",  # %n: the node's name, one folder per slurmd
            f"SlurmctldPidFile={self.path('state', 'slurmctld.pid')}",
            f"SlurmdPidFile={self.path('spool')}/%n/slurmd.pid",
            f"SlurmctldLogFile={self.path('log', 'slurmctld.log')}",
            f"SlurmdLogFile={self.path('log')}/slurmd-%n.log",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory",
            "SlurmdParameters=config_overrides",
            "SchedulerType=sched/builtin", "SchedulerParameters=sched_interval=2",
            "ReturnToService=2", "KillWait=5", "MinJobAge=600", "InactiveLimit=0",
            "PreemptType=preempt/partition_prio", "PreemptMode=REQUEUE",
            "SlurmctldParameters=preempt_send_user_signal",
            "AccountingStorageType=accounting_storage/slurmdbd",
            f"AccountingStorageHost={controller}", f"AccountingStoragePort={self.ports['dbd']}",
            # for slurmdbd connections the munge socket is named here, not in AuthInfo
            f"AccountingStoragePass={self.munge_socket}",
            "JobAcctGatherType=jobacct_gather/none", "JobCompType=jobcomp/none",
            *(f"NodeName={n} NodeAddr={self.net.addr(n)} CPUs={cpus} RealMemory={total_memory_mb() // 4} "
              "Features=cpu State=UNKNOWN" for n in self.nodes),
            # GraceTime: a preempted job gets its signal, then this long to save before it is requeued
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP PriorityTier=1 GraceTime=120",
            "PartitionName=high Nodes=ALL MaxTime=INFINITE State=UP PriorityTier=10",
            "",
        ])

    def slurmdbd_conf(self) -> str:
        return "\n".join([
            "AuthType=auth/munge", f"AuthInfo=socket={self.munge_socket}",
            f"DbdHost={self.host}", f"DbdAddr={self.net.addr('controller')}", f"DbdPort={self.ports['dbd']}",
            "SlurmUser=root",
            f"PidFile={self.path('state', 'slurmdbd.pid')}", f"LogFile={self.path('log', 'slurmdbd.log')}",
            "StorageType=accounting_storage/mysql", "StorageHost=127.0.0.1",
            f"StoragePort={self.ports['mysql']}", "StorageUser=slurm", f"StoragePass={self.db_password}",
            "StorageLoc=slurm_acct_db",
            "",
        ])

    # -- helpers ----------------------------------------------------------------------------
    def run(self, cmd: list[str], check: bool = True, timeout: float = 60) -> str | None:
        """A client command against this cluster; with check=False, None when it fails."""
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=timeout, cwd=self.dir)
        except subprocess.TimeoutExpired:
            if check:
                raise
            return None
        if proc.returncode:
            if check:
                raise ClusterUnavailable(f"`{' '.join(cmd)}` failed: {(proc.stderr or proc.stdout).strip()[-800:]}")
            return None
        return proc.stdout

    def wait_for(self, ready, seconds: float, what: str, fail: bool = True) -> None:
        deadline = time.time() + seconds
        while time.time() < deadline:
            dead = [name for name, p in self.procs if p.poll() is not None]
            if dead and fail:
                raise ClusterUnavailable(f"{dead[0]} exited while waiting for {what}; see {self.path('log')}")
            if ready():
                return
            time.sleep(0.25)
        if fail:
            raise ClusterUnavailable(f"{what} not ready after {seconds:.0f} s; see logs in {self.path('log')}")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0] if argv else "/tmp/vt-slurm")
    signal.signal(signal.SIGTERM, _interrupt)  # `kill PID` stops the daemons as Ctrl-C does
    with Cluster(folder) as cluster:
        print(f"cluster up in {cluster.startup_seconds:.1f} s; in another shell:\n"
              f"  export SLURM_CONF={cluster.conf}\n  sinfo\nCtrl-C stops every daemon.", flush=True)
        try:
            while all(p.poll() is None for _, p in cluster.procs):
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
