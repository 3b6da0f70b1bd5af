"""The sandbox's control channel: how `run_cli.py sandbox …` reaches the running sandbox on this machine.

The sandbox listens on 127.0.0.1 with `multiprocessing.connection` (an HMAC challenge on a random key, then one
request and one answer per call) and writes where and with which key to its control file (`control.json`, mode
0600, in the sandbox's directory). Only who can read that file can drive the sandbox. A call is a command name
and keyword arguments of plain data; the answer is plain data, or a `SandboxRefusal` (a code and a sentence the
CLI shows as is).

Standard library only: the CLI imports this module and nothing else of the sandbox.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections.abc import Callable
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CONTROL_FILE = "control.json"


class SandboxUnavailable(RuntimeError):
    """No sandbox answers: its control file is missing, unreadable, or names a sandbox that has gone."""


class SandboxRefusal(Exception):
    """The sandbox refused a command (an unknown account, bad input): `code` and a sentence for the user."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


Handler = Callable[..., Any]


class ControlServer:
    """Serves `handlers` (command name -> function of keyword arguments) on 127.0.0.1, a thread per caller."""

    def __init__(self, handlers: dict[str, Handler], directory: Path, host: str = "127.0.0.1") -> None:
        self.handlers = handlers
        self.path = directory / CONTROL_FILE
        self._key = secrets.token_bytes(32)
        self._listener = Listener((host, 0), authkey=self._key)
        self._closed = threading.Event()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._listener.address
        return str(host), int(port)

    def start(self) -> ControlServer:
        host, port = self.address
        document = {"host": host, "port": port, "key": self._key.hex(), "pid": os.getpid()}
        temporary = self.path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(document, file)
        os.replace(temporary, self.path)
        threading.Thread(target=self._accept, name="sandbox-control", daemon=True).start()
        return self

    def stop(self) -> None:
        self._closed.set()
        self.path.unlink(missing_ok=True)
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                connection = self._listener.accept()
            except (OSError, EOFError, AuthenticationError):  # closed, a caller without the key, or one who left
                if self._closed.is_set():
                    return
                continue
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: Connection) -> None:
        with connection:
            while True:
                try:
                    command, arguments = connection.recv()
                except (EOFError, OSError, ValueError, TypeError):
                    return
                connection.send(self._answer(command, arguments))

    def _answer(self, command: object, arguments: object) -> tuple[str, Any]:
        handler = self.handlers.get(command) if isinstance(command, str) else None
        if handler is None or not isinstance(arguments, dict):
            return "refused", ("unknown_command", f"the sandbox has no command {command!r}")
        try:
            return "ok", handler(**arguments)
        except SandboxRefusal as refusal:
            return "refused", (refusal.code, str(refusal))
        except TypeError as error:
            return "refused", ("bad_arguments", f"{command}: {error}")
        except Exception as error:
            log.exception("sandbox command %s failed", command)
            return "refused", ("failed", f"{command} failed: {type(error).__name__}")


class ControlClient:
    """A caller of the running sandbox, found through its control file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            document = json.loads(path.read_text())
            self._address = (str(document["host"]), int(document["port"]))
            self._key = bytes.fromhex(document["key"])
        except FileNotFoundError:
            raise SandboxUnavailable(f"no sandbox is running here ({path} does not exist)") from None
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise SandboxUnavailable(f"the sandbox's control file {path} is unreadable: {error}") from None

    def call(self, command: str, **arguments: Any) -> Any:
        try:
            with Client(self._address, authkey=self._key) as connection:
                connection.send((command, arguments))
                outcome, value = connection.recv()
        except AuthenticationError:
            raise SandboxUnavailable(f"the sandbox refused the key in {self.path}: it is another sandbox's") from None
        except (OSError, EOFError) as error:
            raise SandboxUnavailable(f"the sandbox named in {self.path} does not answer: {error}") from None
        if outcome == "refused":
            code, message = value
            raise SandboxRefusal(code, message)
        return value


def control_file(local_dir: Path) -> Path:
    """Where `make run` keeps the sandbox's control file: SANDBOX_CONTROL_FILE, else `<.local>/sandbox/…`."""
    named = os.environ.get("SANDBOX_CONTROL_FILE")
    return Path(named) if named else local_dir / "sandbox" / CONTROL_FILE
