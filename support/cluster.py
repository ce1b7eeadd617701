"""A throw-away three-primary Redis Cluster (tests, the bench): redis-server --cluster-enabled yes
processes on free ports below 55535 (the cluster bus is port + 10000, both must be free),
joined with `redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes`.

Each node has its own directory (its nodes.conf survives a kill, so a restarted node rejoins
with its slots). `stop()` kills every process by its own pid and removes the directories;
`running_cluster()` does it even when the set-up fails half-way.
"""
from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Iterator

from support.redis_binaries import redis_cli_path
from support.redis_servers import PrivateRedis


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_ports(count: int, low: int = 20000, high: int = 55535) -> list[int]:
    """`count` ports p below `high` with p and p + 10000 free right now."""
    chosen: list[int] = []
    for _ in range(2000):
        port = random.randrange(low, high)
        if port in chosen or port + 10000 in chosen or port - 10000 in chosen:
            continue
        if _port_free(port) and _port_free(port + 10000):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise RuntimeError("no free port pairs for a Redis Cluster")


class ClusterNode(PrivateRedis):
    """One redis-server --cluster-enabled yes process in its own directory."""

    def __init__(self, port: int, root: str) -> None:
        super().__init__(port)
        self.dir = f"{root}/{port}"

    def extra_args(self) -> list[str]:
        return ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
                "--cluster-require-full-coverage", "no", "--dir", self.dir]

    def start(self) -> "ClusterNode":
        os.makedirs(self.dir, exist_ok=True)
        return super().start()  # type: ignore[no-any-return]


class LocalCluster:
    """Three (or `size`) primaries, no replicas."""

    def __init__(self, size: int = 3) -> None:
        self.root = tempfile.mkdtemp(prefix="hb-cluster-")
        self.nodes = [ClusterNode(p, self.root) for p in free_cluster_ports(size)]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def start(self) -> "LocalCluster":
        for node in self.nodes:
            node.start()
        done = subprocess.run(
            [redis_cli_path(), "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in self.nodes],
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-2000:]!r} {done.stderr[-2000:]!r}")
        self.wait_ok()
        return self

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every running node says cluster_state:ok and knows every node as connected."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                states = []
                for node in self.nodes:
                    c = node.client()
                    try:
                        info = c.execute_command("CLUSTER", "INFO")
                        info = info.decode() if isinstance(info, bytes) else str(info)
                        nodes = c.execute_command("CLUSTER", "NODES")
                        nodes = nodes.decode() if isinstance(nodes, bytes) else str(nodes)
                    finally:
                        c.close()
                    states.append("cluster_state:ok" in info and "fail" not in nodes
                                  and nodes.count("connected") == len(self.nodes))
                    last = info[:200]
                if all(states):
                    return
            except Exception as exc:  # noqa: BLE001 - not up yet
                last = repr(exc)
            time.sleep(0.1)
        raise TimeoutError(f"cluster not ok after {timeout}s: {last}")

    def owner_of(self, key: str) -> ClusterNode:
        """The node that serves `key`'s hash slot (asked with CLUSTER KEYSLOT and SLOTS)."""
        c = self.nodes[0].client()
        try:
            slot = int(c.execute_command("CLUSTER", "KEYSLOT", key))
            for start, end, primary, *_ in c.execute_command("CLUSTER", "SLOTS"):
                if int(start) <= slot <= int(end):
                    port = int(primary[1])
                    return next(n for n in self.nodes if n.port == port)
        finally:
            c.close()
        raise LookupError(f"no node serves the slot of {key}")

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.kill()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running_cluster(size: int = 3) -> Iterator[LocalCluster]:
    """A started cluster; every process killed and every directory removed afterwards."""
    cluster = LocalCluster(size)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
