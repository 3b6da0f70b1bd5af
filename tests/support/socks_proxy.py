"""A real SOCKS5 server none of us wrote, in front of the loopback MTProto server: `pproxy` (PyPI), run as its own
process as an operator would run it (`python -m pproxy -l socks5://127.0.0.1:PORT[#user:password]`), started and
killed by the test. With `-v` it logs every tunnel it opens ("socks5 CLIENT -> HOST:PORT")."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from scripts.embedded_redis import free_port


class SocksProxy:
    def __init__(self, workdir: Path, user: str | None = None, password: str | None = None) -> None:
        self.port = free_port()
        self.user, self.password = user, password
        self.log_path = workdir / f"pproxy-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f"{self.user}:{self.password}@" if self.user else ""
        return f"socks5://{auth}127.0.0.1:{self.port}"

    def start(self) -> SocksProxy:
        listen = f"socks5://127.0.0.1:{self.port}" + (f"#{self.user}:{self.password}" if self.user else "")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pproxy", "-l", listen, "-v"], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pproxy exited: {self.log_path.read_text(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("pproxy did not start listening")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def tunnels_to(self, port: int) -> int:
        """How many tunnels to 127.0.0.1:`port` it has opened (its verbose log)."""
        return self.log_path.read_text(errors="replace").count(f"-> 127.0.0.1:{port}")

    def __enter__(self) -> SocksProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.kill()
