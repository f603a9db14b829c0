"""A Ray cluster of several nodes on this one machine, each node its own `ray start` processes.

Owns: starting a head (no CPUs, so it compiles nothing) and connecting this process to it as the
driver, worker nodes with chosen CPU counts
and custom resources (stand-ins for GPU models), each on its own free ports, with Ray's token
authentication on; finding each node's
Ray id; killing one node outright (SIGKILL to every process it started, as a machine dying
would); and stopping the lot. For tests, benchmarks and trying `sandbox.backend: ray` without a
cluster. It must never touch Ray processes it did not start (no `ray stop`: other clusters may
share the machine), and never be used by the forge itself.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

# The object store of a compile node holds one job's artifact at a time; Ray's minimum is ~75 MiB.
_OBJECT_STORE_BYTES = 100 * 1024 * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _node_ports() -> list[str]:
    ports = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port"]
    out: list[str] = []
    for flag in ports:
        out += [flag, str(_free_port())]
    # Workers take ports the OS picks: nodes on one machine would otherwise share one range.
    return out + ["--min-worker-port", "0", "--max-worker-port", "0"]


@dataclass
class LocalNode:
    name: str
    proc: subprocess.Popen[bytes]
    cpus: int
    resources: dict[str, float] = field(default_factory=dict)
    node_id: str = ""

    def pids(self) -> list[int]:
        """Every live process of this node: `ray start`, the raylet, agents, workers, actors and
        what they started (the sandbox workers)."""
        try:
            root = psutil.Process(self.proc.pid)
            return [root.pid, *(p.pid for p in root.children(recursive=True))]
        except psutil.Error:
            return []


class LocalCluster:
    """`start()` the head, `add_node()` workers one at a time, `kill_node()`, `stop()`."""

    def __init__(self, root: Path, *, ray_bin: str | None = None) -> None:
        self.root = Path(root)
        self.ray_bin = ray_bin or str(Path(sys.executable).with_name("ray"))
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: dict[str, LocalNode] = {}
        # Token authentication, as a real cluster should run: only holders of the token (its
        # nodes, and this process as the driver) may talk to it.
        self.token_path = self.root / "auth_token"
        self._auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path)}
        self._env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", **self._auth)

    def _launch(self, name: str, args: list[str], cpus: int, resources: dict[str, float]) -> LocalNode:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - the node owns it for its life
        cmd = [self.ray_bin, "start", "--block", "--node-ip-address", "127.0.0.1", f"--num-cpus={cpus}",
               f"--object-store-memory={_OBJECT_STORE_BYTES}", "--disable-usage-stats", *_node_ports(), *args]
        if resources:
            cmd.append(f"--resources={json.dumps(resources)}")
        proc = subprocess.Popen(cmd, env=self._env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        node = self.nodes[name] = LocalNode(name, proc, cpus, dict(resources))
        node.node_id = self._wait_for_raylet(node)
        return node

    def start(self, timeout_s: float = 120) -> None:
        """Start the head node (zero CPUs: it hosts no compile actor) and wait until it serves."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(_process_token())
        head_args = ["--head", f"--port={self.port}", f"--temp-dir={self.root / 'ray'}",
                     "--include-dashboard=false", f"--dashboard-port={_free_port()}",
                     f"--ray-client-server-port={_free_port()}"]
        self._launch("head", head_args, 0, {})
        import ray

        # This process becomes the cluster's driver, as the forge would (`RayExecutor` reuses it).
        os.environ.update(self._auth)
        # Ray caches its configuration at import; this is how Ray itself switches a live process to
        # token mode (`_enable_token_auth`).
        from ray._raylet import Config  # type: ignore[attr-defined]  # Ray's _raylet.pyi omits the Cython Config class

        Config.initialize("")
        ray.init(address=self.address, log_to_driver=False, logging_level=logging.WARNING)
        self._wait_registered(["head"], timeout_s)

    def add_node(self, name: str, *, cpus: int = 1, resources: dict[str, float] | None = None, timeout_s: float = 120) -> LocalNode:
        """Start a worker node and wait until the cluster lists it (nodes start one at a time:
        nodes on one machine name their sockets by order of arrival)."""
        node = self._launch(name, [f"--address={self.address}"], cpus, dict(resources or {}))
        self._wait_registered([name], timeout_s)
        return node

    def kill_node(self, name: str) -> list[int]:
        """SIGKILL every process of the node at once (a machine dying); returns the pids."""
        node = self.nodes.pop(name)
        pids = node.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.proc.pid, signal.SIGKILL)
        node.proc.wait(30)
        return pids

    def stop(self) -> None:
        """Disconnect, kill every node (workers first, then the head), wait for them to go."""
        import ray

        ray.shutdown()
        pids: list[int] = []
        for name in [n for n in self.nodes if n != "head"] + [n for n in self.nodes if n == "head"]:
            pids += self.kill_node(name)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.2)

    def _wait_for_raylet(self, node: LocalNode, timeout_s: float = 120) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if node.proc.poll() is not None:
                raise RuntimeError(f"ray node {node.name} exited with {node.proc.returncode}: see {self.root / (node.name + '.log')}")
            for pid in node.pids():
                with contextlib.suppress(psutil.Error):
                    for arg in psutil.Process(pid).cmdline():
                        if arg.startswith("--node_id="):
                            return arg.split("=", 1)[1]
            time.sleep(0.2)
        raise TimeoutError(f"ray node {node.name} started no raylet within {timeout_s:g} s")

    def _wait_registered(self, names: list[str], timeout_s: float) -> None:
        """Until the cluster lists these nodes alive."""
        import ray

        wanted = {self.nodes[n].node_id for n in names}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if wanted <= {n["NodeID"] for n in ray.nodes() if n["Alive"]}:
                return
            time.sleep(0.3)
        raise TimeoutError(f"nodes {names} did not join the cluster within {timeout_s:g} s")


@functools.cache
def _process_token() -> str:
    """One token per process: Ray's client keeps the first token it reads for the process's life."""
    return secrets.token_hex(32)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
