"""``python -m heshi serve`` as a real child process, for tests where process death is the point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from heshi.config import HeshiConfig
from tests.fakes.waiting import wait_until

STARTUP_SECONDS = 60.0  # generous: a loaded CI machine; a healthy start takes ~1 s


def write_config(config: HeshiConfig, path: Path) -> Path:
    """``config`` as the heshi.yaml a ``heshi serve --config`` reads."""
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), allow_unicode=True))
    return path


class GatewayProcess:
    """One ``heshi serve --no-local`` child; its output goes to ``log``."""

    def __init__(self, config_path: Path, url: str, home: Path, log: Path, *args: str) -> None:
        self.config_path = config_path
        self.url = url
        self.home = home
        self.log = log
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the child and wait until ``/healthz`` answers (fails if it exits first)."""
        command = [sys.executable, "-m", "heshi", "serve", "--no-local"]
        command += ["--config", str(self.config_path), "--log-level", "warning", *self.args]
        env = {**os.environ, "HESHI_HOME": str(self.home)}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        proc = self.proc
        with httpx.Client(timeout=2) as client:

            def answering() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"heshi serve exited at start:\n{self.log.read_text()}")
                try:
                    return client.get(self.url + "/healthz").status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(
                answering,
                timeout=STARTUP_SECONDS,
                interval=0.05,
                message=lambda: f"heshi serve did not start:\n{self.log.read_text()}",
            )

    def kill(self) -> None:
        """``kill -9``: no shutdown code runs."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        assert self.proc.returncode == -signal.SIGKILL

    def stop(self) -> None:
        """A graceful stop (SIGTERM), as a service manager would do it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"heshi serve ignored SIGTERM:\n{self.log.read_text()}") from None
