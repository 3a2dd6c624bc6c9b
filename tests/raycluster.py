"""A real two-node Ray cluster on loopback, for tests and benchmarks.

``ray start --head`` and a second ``ray start --address`` node, each with one CPU, a small object
store and its own custom resource (``node:head`` / ``node:second``), every port chosen free, run in
the foreground (``--block``) in their own process groups. Stopping sends SIGTERM to the second node
(it drains), then to the head's group, then SIGKILL to anything left in either group, so only this
cluster's processes are ever touched (never ``ray stop``, which would end every Ray on the machine).
``start`` leaves this process connected (``ray.init``); workers import medcorpus from this checkout
(PYTHONPATH), like the driver.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAD_IP = "127.0.0.2"


def ray_cli() -> str:
    """The ``ray`` script of the interpreter running the tests (.venv/bin/ray in a fresh clone)."""
    here = Path(sys.executable).parent / "ray"
    return str(here) if here.exists() else (shutil.which("ray") or "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reload_auth() -> None:
    """Ray reads RAY_AUTH_MODE / RAY_AUTH_TOKEN once per process: re-read them if Ray is imported."""
    if "ray" not in sys.modules:
        return
    try:
        from ray._raylet import AuthenticationTokenLoader, Config
    except ImportError:
        return
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@dataclass
class LoopbackCluster:
    cpus_per_node: int = 1
    object_store_bytes: int = 200_000_000
    pin: bool = False  # each node (its raylet and every worker it starts) on a core of its own (taskset)
    address: str = ""
    temp_dir: str = ""
    procs: list[subprocess.Popen] = field(default_factory=list)
    # token authentication with this cluster's own token (not ~/.ray/auth_token): on a shared machine
    # no one else's process can submit work to it. This process and its children get it through the
    # environment while the cluster runs.
    auth: dict[str, str] = field(default_factory=lambda: {"RAY_AUTH_MODE": "token",
                                                          "RAY_AUTH_TOKEN": secrets.token_hex(32)})
    _saved_env: dict[str, str | None] = field(default_factory=dict)

    def _node_args(self) -> list[str]:
        return ["--num-cpus", str(self.cpus_per_node), "--num-gpus", "0",
                "--object-store-memory", str(self.object_store_bytes),
                "--node-manager-port", str(_free_port()), "--object-manager-port", str(_free_port()),
                "--dashboard-agent-listen-port", str(_free_port()), "--dashboard-agent-grpc-port", str(_free_port()),
                "--runtime-env-agent-port", str(_free_port()), "--metrics-export-port", str(_free_port()),
                "--disable-usage-stats", "--block"]

    def _env(self) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
        return {**os.environ, "PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_DATA_USAGE_DISABLED": "1", "RAY_ADDRESS": "", **self.auth}

    def start(self, timeout: float = 120) -> "LoopbackCluster":
        # a short private temp dir: Ray's socket paths must stay under the 107-byte limit
        self.temp_dir = tempfile.mkdtemp(prefix="mcray-", dir="/tmp")
        self._saved_env = {k: os.environ.get(k) for k in self.auth}
        os.environ.update(self.auth)
        _reload_auth()
        port = _free_port()
        self.address = f"{HEAD_IP}:{port}"
        logs = open(Path(self.temp_dir) / "cluster.log", "ab")
        # Loopback only. Ray swaps 127.0.0.1 / localhost for the host's outward address, but keeps any
        # other loopback address: the head listens on 127.0.0.2; the second node (and every driver)
        # takes the address it reaches the head from, 127.0.0.1.
        head = [*self._pinned(0), ray_cli(), "start", "--head", "--port", str(port), "--include-dashboard=false",
                "--node-ip-address", HEAD_IP,
                "--ray-client-server-port", str(_free_port()), "--temp-dir", self.temp_dir,
                "--resources", '{"node:head": 1}', *self._node_args()]
        self.procs.append(subprocess.Popen(head, env=self._env(), stdout=logs, stderr=logs, start_new_session=True))
        self._wait_for(1, timeout)
        second = [*self._pinned(1), ray_cli(), "start", "--address", self.address, "--resources", '{"node:second": 1}',
                  *self._node_args()]
        self.procs.append(subprocess.Popen(second, env=self._env(), stdout=logs, stderr=logs, start_new_session=True))
        self._wait_for(2, timeout)
        return self

    def _pinned(self, node: int) -> list[str]:
        """``taskset`` for node ``node`` when pinning: cores ``node * cpus_per_node`` onwards."""
        if not self.pin:
            return []
        cores = sorted(os.sched_getaffinity(0))
        mine = [cores[(node * self.cpus_per_node + i) % len(cores)] for i in range(self.cpus_per_node)]
        return ["taskset", "-c", ",".join(map(str, mine))]

    def _wait_for(self, nodes: int, timeout: float) -> None:
        """Connect this process to the cluster (``ray.init``) and wait until ``nodes`` nodes are alive."""
        import ray

        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(p.poll() is not None for p in self.procs):
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"a ray node exited:\n{tail}")
            if not ray.is_initialized():
                try:
                    ray.init(address=self.address, logging_level="WARNING", log_to_driver=False)
                except (ConnectionError, RuntimeError):
                    time.sleep(1)
                    continue
            if sum(1 for n in ray.nodes() if n["Alive"]) >= nodes:
                return
            time.sleep(0.5)
        tail = self.log_tail()
        self.stop()
        raise TimeoutError(f"ray cluster did not reach {nodes} nodes in {timeout}s:\n{tail}")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return (Path(self.temp_dir) / "cluster.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def worker_pids(self, title: str) -> list[int]:
        """Processes of this cluster whose title contains ``title``: Ray workers lead their own
        process groups, so a worker counts when its parent (a raylet) is in one of the nodes' groups."""
        groups = {p.pid for p in self.procs}
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if title not in cmd:
                    continue
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if os.getpgid(int(entry.name)) in groups or os.getpgid(ppid) in groups:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
        return sorted(found)

    def stop(self) -> None:
        import ray

        ray.shutdown()
        for proc in reversed(self.procs):  # the second node first: it drains while the head still runs
            try:
                proc.send_signal(signal.SIGTERM) if proc is not self.procs[0] else os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10 if proc is not self.procs[0] else 5)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        self.procs.clear()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _reload_auth()
