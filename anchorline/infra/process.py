"""What every local server launcher shares: start/stop as a context, one child process, a log."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from anchorline.errors import ConfigurationError
from anchorline.infra.ports import port_taken


class PortTaken(ConfigurationError):
    """A port a server needs is held by another process."""


class Startable:
    """start() on entering the context, stop() on leaving it."""

    def start(self, *, timeout: float) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()  # type: ignore[call-arg]  # subclasses give timeout a default
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class LocalServer(Startable):
    """A server run as a child in a session of its own, its output in state_dir/<log_name>."""

    name = "server"
    log_name = "server.log"
    stop_timeout = 10.0

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir.resolve()  # the process runs with it as cwd
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.state_dir / self.log_name

    def _prepare(self) -> None:
        """Anything to do before the first launch (config files, storage)."""

    def _ports(self) -> list[int]:
        """The ports the server listens on: each must be free before it starts."""
        return []

    def _check_ports(self) -> None:
        """Refuse a port already taken: whatever answers there would pass for this server."""
        for port in self._ports():
            if port_taken(port):
                raise PortTaken(
                    f"{self.name}: port {port} on 127.0.0.1 is taken by another process"
                )

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _wait_ready(self, timeout: float) -> None:
        raise NotImplementedError

    def start(self, *, timeout: float = 60.0) -> None:
        self.launch()
        self.wait_started(timeout=timeout)

    def launch(self) -> None:
        """Start the process without waiting for it to serve (see wait_started)."""
        if self._process is not None:
            raise RuntimeError(f"{self.name} is already running")
        self._check_ports()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._prepare()
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            self._command(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.state_dir,
            start_new_session=True,  # Ctrl-C must reach the launcher first, not this
        )

    def wait_started(self, *, timeout: float) -> None:
        """Wait until the launched process serves; stop it if it does not in time."""
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL the server's whole session (a crash, on purpose); start() brings it back."""
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self.stop()

    def stop(self) -> None:
        """SIGTERM the server, and kill it if it does not exit in time."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _check_alive(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            code = self._process.returncode
            raise RuntimeError(f"{self.name} exited with code {code}\n{self._log_tail()}")

    def _log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return f"(no {self.log_name})"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
