"""`run_sandbox.py`: the Telegram sandbox as a process — the loopback MTProto server, its people, and the
control channel the CLI's `sandbox` commands use.

It listens on 127.0.0.1 unless told otherwise (`--host`), with a fresh RSA key each start. In its directory it
writes the server's public key (`server_key.pem`: a worker's TG_MTPROTO_PUBKEY) and `control.json` (how the
CLI reaches it; mode 0600). The first line on stdout is the worker's TG_MTPROTO_DC, for whoever started it.
Nothing persists: a new start is a new, empty Telegram (the accounts the fleet logged in before are gone).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

import click

from sandbox.control import ControlServer
from sandbox.mtproto import MTProtoServer
from sandbox.people import People
from sandbox.service import SandboxService
from version import __version__

PUBLIC_KEY_FILE = "server_key.pem"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="run_sandbox.py", message="%(prog)s %(version)s")
@click.option("--host", envvar="SANDBOX_HOST", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", envvar="SANDBOX_PORT", type=click.IntRange(0, 65535), default=0, help="0: a free port.")
@click.option(
    "--dir",
    "directory",
    envvar="SANDBOX_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".local/sandbox"),
    show_default=True,
    help="Where the public key and the control file go.",
)
@click.option(
    "--chatter",
    envvar="SANDBOX_CHATTER_SECONDS",
    type=click.FloatRange(0, 86400),
    default=30.0,
    show_default=True,
    help="Seconds between messages the scripted contacts write on their own (0: never).",
)
def main(host: str, port: int, directory: Path, chatter: float) -> None:
    """Run a Telegram of your own on this machine (the sandbox): accounts log in to it and message its people."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if host not in LOOPBACK:
        click.echo(f"warning: the sandbox listens on {host}, beyond this machine, as told", err=True)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        server = MTProtoServer(host=host, port=port).start()
    except OSError as error:
        raise click.ClickException(f"the sandbox cannot listen on {host}:{port}: {error.strerror or error}") from None
    server.write_public_key(directory / PUBLIC_KEY_FILE)
    people = People(server, chatter_every=chatter).start()
    control = ControlServer(SandboxService(server, people).handlers(), directory).start()
    click.echo(server.dc_setting, nl=True)
    sys.stdout.flush()
    click.echo(
        f"🧪 Telegram sandbox on {server.host}:{server.port} (DC {server.dc_id}): not Telegram, nothing leaves "
        f"this machine. Workers: TG_MTPROTO_DC={server.dc_setting} "
        f"TG_MTPROTO_PUBKEY={directory / PUBLIC_KEY_FILE}",
        err=True,
    )
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    stopping.wait()
    control.stop()
    people.stop()
    server.stop()
    click.echo("sandbox stopped", err=True)
