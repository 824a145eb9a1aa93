"""Running the node as a separate process, and keeping such runs off the vehicle's DDS traffic.

The demo and the cross-process tests start the real executable (`vlm-node run`) rather than a
node object in their own process, so what they exercise is what a vehicle runs: parameter files
and ROS arguments, the Fast DDS profile, shared-memory transport between processes, signals.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

from vlm_node.errors import VlmNodeError


class NodeProcessError(VlmNodeError):
    """The node process exited, or did not become ready or stop in time."""


def isolated_env(base: dict[str, str] | None = None, domain_id: int | None = None
                 ) -> dict[str, str]:
    """`base` (default os.environ) with DDS discovery limited to this host and a ROS domain
    of its own, so a demo or test on a vehicle's computer never talks to the vehicle's nodes.
    A ROS_DOMAIN_ID the user exported is kept unless `domain_id` is given."""
    env = dict(os.environ if base is None else base)
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    elif "ROS_DOMAIN_ID" not in env:
        # 1..101: valid for Fast DDS's default port mapping, avoids the usual 0.
        env["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 101))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return env


def isolate_this_process(domain_id: int | None = None) -> dict[str, str]:
    """Put this process (which will talk to a child node) in the same isolated domain as the
    child: `isolated_env` applied to os.environ, plus the large-image Fast DDS profile. Call
    before rclpy creates a participant. Returns the environment for the child process."""
    from vlm_node import fastdds

    env = isolated_env(domain_id=domain_id)
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    fastdds.apply()
    return env


def wait_until(predicate: Callable[[], object], timeout: float, what: str,
               interval: float = 0.02) -> object:
    """Poll `predicate` until it returns something truthy; NodeProcessError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise NodeProcessError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)


class NodeProcess:
    """`vlm-node run [--config F] --ros-args ...` as a child process with its output in a log
    file. Use as a context manager, or call `stop()`; `wait_ready()` returns once the node has
    logged that it is active (subscriptions exist)."""

    READY_MARK = "active:"

    def __init__(self, ros_args: Sequence[str] = (), *, configs: Sequence[str | Path] = (),
                 env: dict[str, str] | None = None, cwd: str | Path | None = None,
                 module: str | None = None, ready_mark: str | None = None) -> None:
        """`module`: run `python -m MODULE --ros-args ...` instead of `vlm-node run` (e.g. the
        benchmark's echo node), ready when its output shows `ready_mark`."""
        if module is None:
            cmd = [sys.executable, "-m", "vlm_node.cli.main", "run"]
            for cfg in configs:
                cmd += ["--config", str(cfg)]
        else:
            cmd = [sys.executable, "-m", module]
        cmd += ["--ros-args", *ros_args]
        self.ready_mark = ready_mark or self.READY_MARK
        self.command = cmd
        fd, name = tempfile.mkstemp(prefix="vlm_node_", suffix=".log")
        self.log_path = Path(name)
        self._log = os.fdopen(fd, "w+")
        child_env = dict(os.environ if env is None else env)
        child_env.setdefault("PYTHONUNBUFFERED", "1")
        child_env.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "0")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=child_env, cwd=cwd)

    def __enter__(self) -> "NodeProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def wait_ready(self, timeout: float = 120.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise NodeProcessError(f"the node exited with status {self.proc.returncode}:\n"
                                       f"{self.tail()}")
            return self.ready_mark in self.output()
        try:
            wait_until(ready, timeout, "the node to become active", interval=0.05)
        except NodeProcessError:
            if self.proc.poll() is None:
                raise NodeProcessError(f"the node did not become active within {timeout:.0f} s:"
                                       f"\n{self.tail()}") from None
            raise

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> tuple[int, float]:
        """Send `sig` (SIGINT, like Ctrl-C) and wait; kill after `timeout`. Returns (exit
        status, seconds it took to exit). Idempotent."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise NodeProcessError(f"the node did not stop within {timeout:.0f} s of signal "
                                       f"{sig}; killed:\n{self.tail()}") from None
        took = time.monotonic() - t0
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode, took
