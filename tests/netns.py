"""Nodes on one machine: each a Linux network namespace with its own hostname, joined by a bridge.

    net = Nodes(["vtnode1", "vtnode2"], folder); net.up()
    subprocess.Popen(net.inside("vtnode1", ["slurmd", ...]))      # runs on "vtnode1"
    net.down()

Layout (root namespace = the controller, `addr("controller")`):

    root ns: bridge <id>b 198.18.X.1/24 ── veth <id>h1 ═ eth0 198.18.X.11/24 in netns <id>-vtnode1
                                        └─ veth <id>h2 ═ eth0 198.18.X.12/24 in netns <id>-vtnode2

198.18.0.0/15 is the range set aside for network tests (RFC 2544): it is never routed, so the links carry
only the test's own traffic. A process started with `inside()` also gets a mount namespace of its own whose
/etc/hosts names the nodes and the controller by their link addresses (the machine's /etc/hosts is not
touched), and a UTS namespace whose hostname is the node's name, as on a real cluster.

Nothing must outlive the test session, even when pytest is killed: every name starts with PREFIX and the
owning process's pid, a record of it lies in REGISTRY, and
- `down()` kills every process in the namespaces and deletes them and the bridge;
- a reaper process (own session) waits on a pipe from the owner and does the same when the pipe closes,
  i.e. when the owner exits in any way, SIGKILL included;
- `reap_stale()`, called before anything is created, removes whatever a dead owner left (a reaper that was
  killed too, a machine that rebooted with /run kept).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PREFIX = "vtsl"  # every namespace, link and record made here; no other code on this machine uses it
REGISTRY = Path(tempfile.gettempdir()) / "vt-test-netns"
SUBNETS = "198.18.{}.0/24"


class NetworkUnavailable(RuntimeError):
    pass


def sh(*cmd: str, check: bool = True) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and proc.returncode:
        raise NetworkUnavailable(f"`{' '.join(cmd)}` failed: {proc.stderr.strip()}")
    return proc.stdout


def start_time(pid: int) -> str | None:
    """The kernel's start time of a process (clock ticks since boot): a pid together with it names one process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class Nodes:
    def __init__(self, names: list[str], folder: Path):
        self.names, self.dir = list(names), Path(folder)
        self.owner, self.owner_start = os.getpid(), start_time(os.getpid())
        self.id = f"{PREFIX}{self.owner}"
        self.bridge = f"{self.id}b"  # interface names have at most 15 characters: vtsl + pid + b fits
        self.netns = {n: f"{self.id}-{n}" for n in names}
        self.hosts = self.dir / "hosts"
        self.subnet: str | None = None
        self._reaper: subprocess.Popen | None = None

    # -- addresses --------------------------------------------------------------------------
    def addr(self, name: str) -> str:
        """The link address of a node, or of the controller (the root namespace, on the bridge)."""
        base = self.subnet.rsplit(".", 1)[0]  # 198.18.X
        return f"{base}.1" if name == "controller" else f"{base}.{11 + self.names.index(name)}"

    @property
    def record(self) -> Path:
        return REGISTRY / f"{self.id}.json"

    # -- lifecycle --------------------------------------------------------------------------
    def up(self, controller_names: list[str]) -> None:
        """Create the bridge, the namespaces and their links; controller_names: what the nodes call the
        controller (its hostname), resolved to the bridge address in their /etc/hosts."""
        if os.geteuid() != 0:
            raise NetworkUnavailable("network namespaces need root")
        reap_stale()
        self.subnet = free_subnet()
        REGISTRY.mkdir(exist_ok=True)
        self.record.write_text(json.dumps({"owner": self.owner, "owner_start": self.owner_start, "dir": str(self.dir),
                                           "netns": list(self.netns.values()), "links": [self.bridge]}))
        self._start_reaper()
        try:
            self._create(controller_names)
        except Exception:
            self.down()
            raise

    def _create(self, controller_names: list[str]) -> None:
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.addr('controller')}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for i, name in enumerate(self.names, 1):
            ns, host_end, node_end = self.netns[name], f"{self.id}h{i}", f"{self.id}p{i}"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", node_end)
            sh("ip", "link", "set", node_end, "netns", ns)
            sh("ip", "link", "set", host_end, "master", self.bridge)
            sh("ip", "link", "set", host_end, "up")
            inside = ["ip", "netns", "exec", ns]
            sh(*inside, "ip", "link", "set", node_end, "name", "eth0")
            sh(*inside, "ip", "addr", "add", f"{self.addr(name)}/24", "dev", "eth0")
            sh(*inside, "ip", "link", "set", "eth0", "up")
            sh(*inside, "ip", "link", "set", "lo", "up")
        lines = ["127.0.0.1 localhost", f"{self.addr('controller')} {' '.join(controller_names)}",
                 *(f"{self.addr(n)} {n}" for n in self.names)]
        self.hosts.write_text("\n".join(lines) + "\n")

    def down(self) -> None:
        remove(self.netns.values(), [self.bridge], self.dir)
        self.record.unlink(missing_ok=True)
        if self._reaper is not None:
            self._reaper.stdin.close()  # nothing left to reap: it exits
            self._reaper.wait(timeout=30)
            self._reaper = None

    def inside(self, name: str, cmd: list[str]) -> list[str]:
        """The command line that runs `cmd` on node `name`: its network, its hostname, its /etc/hosts."""
        script = f'mount --bind {self.hosts} /etc/hosts && hostname {name} && exec "$@"'
        return ["nsenter", f"--net=/run/netns/{self.netns[name]}", "--",
                "unshare", "--uts", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", *cmd]

    def _start_reaper(self) -> None:
        self._reaper = subprocess.Popen([sys.executable, "-m", "tests.netns", str(self.record)],
                                        stdin=subprocess.PIPE, start_new_session=True,
                                        cwd=Path(__file__).resolve().parents[1],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def free_subnet() -> str:
    used = set(re.findall(r"inet 198\.18\.(\d+)\.", sh("ip", "-o", "-4", "addr")))
    for x in range(256):
        if str(x) not in used:
            return SUBNETS.format(x)
    raise NetworkUnavailable("no free /24 left in 198.18.0.0/16")


def ours(pid: int, folder: Path) -> bool:
    """A process started for this cluster: its command line or environment names the cluster's folder."""
    needle = str(folder).encode()
    try:
        return needle in Path(f"/proc/{pid}/cmdline").read_bytes() or needle in Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False


def remove(netns, links, folder: Path | None) -> None:
    """SIGKILL every process in the namespaces or started for `folder`, then delete namespaces and links."""
    victims = set()
    for ns in netns:
        victims |= {int(p) for p in sh("ip", "netns", "pids", ns, check=False).split()}
    if folder is not None:
        victims |= {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and ours(int(p.name), folder)}
    victims.discard(os.getpid())
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.time() + 10
    while time.time() < deadline and any(Path(f"/proc/{p}").exists() and _alive(p) for p in victims):
        time.sleep(0.05)
    for ns in netns:
        sh("ip", "netns", "del", ns, check=False)  # its veth end goes with it, and so does the other end
    for link in links:
        sh("ip", "link", "del", link, check=False)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def reap_stale() -> None:
    """Remove what owners that are no longer running left behind: their records, namespaces and links."""
    for record in REGISTRY.glob(f"{PREFIX}*.json") if REGISTRY.is_dir() else []:
        try:
            r = json.loads(record.read_text())
        except (OSError, ValueError):
            record.unlink(missing_ok=True)
            continue
        if start_time(r["owner"]) != r["owner_start"]:
            remove(r["netns"], r["links"], Path(r["dir"]))
            record.unlink(missing_ok=True)
    # anything with our prefix whose owner is gone and whose record was lost
    for ns in sh("ip", "netns", "list", check=False).split():
        owner = re.match(rf"{PREFIX}(\d+)-", ns)
        if owner and start_time(int(owner.group(1))) is None:
            remove([ns], [], None)
    for link in re.findall(rf"\d+: ({PREFIX}\d+[bh]\d*)[@:]", sh("ip", "-o", "link", check=False)):
        if start_time(int(re.match(rf"{PREFIX}(\d+)", link).group(1))) is None:
            sh("ip", "link", "del", link, check=False)


def reaper(record: Path) -> int:
    """Block until the owner closes our stdin (it exited, or `down()` ran), then remove what is left."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for pytest must not end the reaper first
    sys.stdin.buffer.read()
    if record.is_file():
        r = json.loads(record.read_text())
        remove(r["netns"], r["links"], Path(r["dir"]))
        record.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(reaper(Path(sys.argv[1])))
