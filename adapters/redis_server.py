"""A real ``redis-server`` of its own, on a free loopback port, for the fleet tests and
``heirline demo --fleet``.

Never a system service, never a mock: :class:`RedisServer` starts the binary
with persistence off (``--save '' --appendonly no``), waits (bounded) until it
answers PING, and kills it at teardown. Its own session (``start_new_session``):
a Ctrl-C in the terminal reaches the program that started it, which stops it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["RedisServer", "free_port", "redis_binary"]


def redis_binary() -> str | None:
    """The ``redis-server`` on PATH (or Debian's), ``None`` if there is none."""
    found = shutil.which("redis-server")
    if found is None and Path("/usr/bin/redis-server").exists():
        found = "/usr/bin/redis-server"
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """``redis-server`` on 127.0.0.1:``port``; :meth:`start`, :meth:`stop`, :meth:`restart`."""

    def __init__(self, binary: str, port: int | None = None, aof_dir: str | None = None) -> None:
        self.binary = binary
        self.port = port if port is not None else free_port()
        #: With a directory, every write is in an append-only file, fsynced before Redis
        #: answers (``appendfsync always``): a restart keeps what was acknowledged.
        self.aof_dir = aof_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--daemonize", "no", "--loglevel", "warning"]
        if self.aof_dir is None:
            args += ["--appendonly", "no"]
        else:
            args += ["--appendonly", "yes", "--appendfsync", "always", "--dir", self.aof_dir]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {err}")
            if _ping(self.port):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING on port {self.port} in {timeout} s")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.kill()
        process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()

    def restart(self) -> None:
        """Kill and start again on the same port (without ``aof_dir`` the data is gone)."""
        self.stop()
        self.start()
