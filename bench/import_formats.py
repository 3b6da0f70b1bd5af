"""Benchmark: import 1,000 sessions of mixed formats the way `run_cli.py accounts import --folder` does.

Writes a folder of N sessions, a fifth of each format (Telethon strings and `.session` files, Pyrogram strings
of both layouts and `.session` files, tdata folders), each named after its phone; then finds and imports them
through the CLI's own path (`backend.session_sources.sources_in` → `backend.cli.importing.import_source` →
the accounts service) into a temp SQLite database, on an embedded Redis. Reports the wall time, and the peak
memory of a second run on a fresh database with tracemalloc on (it slows Python, so it is not timed). No bar.

    .venv/bin/python bench/import_formats.py [--sessions 1000] [--zip]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import resource
import struct
import sys
import tempfile
import time
import tracemalloc
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.cli.importing import Options, Row, import_source, read_source
from backend.control_plane import ControlPlane
from backend.session_sources import sources_in, unpacked
from bench.common import API_HASH, SECRET_KEY
from common.session_formats import PortableSession, SessionData, SessionFormat, write_session, write_tdata
from scripts.embedded_redis import EmbeddedRedis

FORMATS = ("telethon-string", "telethon-file", "pyrogram-string", "pyrogram-file", "tdata")
ADDRESSES = {1: "149.154.175.53", 2: "149.154.167.51", 4: "149.154.167.91"}


def write_sessions(folder: Path, count: int) -> dict[str, int]:
    """`count` sessions, the formats in turn; how many of each. (Each tdata costs ~0.3 s to write: its local key
    is derived as Telegram Desktop derives it; opentele's faster "performance mode" fails to save in 1.5.0.)"""
    folder.mkdir()
    made = dict.fromkeys(FORMATS, 0)
    for index in range(count):
        fmt = FORMATS[index % len(FORMATS)]
        dc = (1, 2, 4)[index % 3]
        key = (index + 1).to_bytes(4, "big") * 64
        item = PortableSession(SessionData(dc, ADDRESSES[dc], 443, key), user_id=10_000 + index, api_id=12345)
        phone = f"1555{index:07d}"
        if fmt == "tdata":
            write_tdata([item], folder / phone)
        elif fmt == "pyrogram-string" and index % 2:  # Pyrogram 1's layout (no API ID), as Pyrogram 1 packs it
            packed = struct.pack(">B?256sQ?", dc, False, key, item.user_id, False)
            (folder / f"{phone}.txt").write_text(base64.urlsafe_b64encode(packed).decode().rstrip("="))
        else:
            suffix = ".txt" if SessionFormat(fmt).is_string else ".session"
            write_session(item, fmt, folder / f"{phone}{suffix}")
        made[fmt] += 1
    return made


def read_all(sessions: Path, use_zip: bool) -> float:
    """Finding and reading every session alone (no database): seconds."""
    started = time.perf_counter()
    with contextlib.ExitStack() as archives:
        root = archives.enter_context(unpacked(sessions)) if use_zip else sessions
        for source in sources_in(root, archives, sessions.name if use_zip else "", use_zip):
            read_source(source, Options("bench"))
    return time.perf_counter() - started


def import_all(redis_url: str, workdir: Path, sessions: Path, use_zip: bool) -> tuple[float, list[Row]]:
    """One import into a fresh database, as the CLI does it: (seconds, rows)."""
    plane = ControlPlane(redis_url, f"sqlite:///{workdir / 'bench.db'}", 10.0, secret_key=lambda: SECRET_KEY)
    plane.fleet.add_worker("bench", "127.0.0.1", "bench")
    options = Options("bench", "12345", API_HASH)
    rows: list[Row] = []
    started = time.perf_counter()
    with contextlib.ExitStack() as archives:
        if use_zip:
            root = archives.enter_context(unpacked(sessions))
            sources = sources_in(root, archives, sessions.name, True)
        else:
            sources = sources_in(sessions, archives)
        for source in sources:
            rows.extend(import_source(plane.accounts, source, options))
    elapsed = time.perf_counter() - started
    plane.close()
    return elapsed, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--zip", action="store_true", help="import them from one .zip archive instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(workdir=tmp) as server:
        base = Path(tmp)
        started = time.perf_counter()
        made = write_sessions(base / "sessions", args.sessions)
        source = base / "sessions"
        if args.zip:
            source = base / "sessions.zip"
            with zipfile.ZipFile(source, "w") as bundle:
                for path in sorted((base / "sessions").rglob("*")):
                    if path.is_file():
                        bundle.write(path, path.relative_to(base / "sessions").as_posix())
        written = time.perf_counter() - started
        (base / "timed").mkdir()
        (base / "traced").mkdir()
        read_all(source, args.zip)  # warm: opentele and Telethon imported, files in the page cache
        reading = read_all(source, args.zip)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        seconds, rows = import_all(server.url, base / "timed", source, args.zip)
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        _, traced_rows = import_all(server.url, base / "traced", source, args.zip)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    imported = sum(row.ok for row in rows)
    failed = [f"{row.file}: {row.reason}" for row in rows if not row.ok]
    mix = ", ".join(f"{n} {fmt}" for fmt, n in made.items())
    print(f"Import of {args.sessions:,} mixed-format sessions ({mix}) from a {'zip' if args.zip else 'folder'}")
    print(f"  written in {written:.1f} s (not part of the figures)")
    print(f"  imported {imported} of {len(rows)} in {seconds:.1f} s: {seconds / max(1, len(rows)) * 1000:.1f} ms each")
    print(f"  of which finding and reading them: {reading:.1f} s (the rest is the accounts service and its database)")
    print(
        f"  peak Python memory during an import: {peak / 2**20:.1f} MB (tracemalloc, a second run);"
        f" process peak RSS {rss_after / 1024:.0f} MB (was {rss_before / 1024:.0f} MB before the import)"
    )
    for line in failed[:10]:
        print(f"  failed {line}")
    return 0 if imported == len(rows) == args.sessions and sum(r.ok for r in traced_rows) == imported else 1


if __name__ == "__main__":
    sys.exit(main())
