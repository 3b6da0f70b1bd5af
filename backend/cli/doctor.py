"""`run_cli.py doctor`: the checks of `backend.doctor` (configuration, the database, Redis, the backend, the
workers), one line each or one JSON document; exit 1 when any failed."""

from __future__ import annotations

import sys

import click

from backend.cli.base import Context, emit_json, json_option, pass_context, say


@click.command("doctor")
@json_option
@pass_context
def doctor(context: Context, as_json: bool) -> None:
    """Check configuration, the database and Redis; print each problem."""
    from backend.doctor import run_checks

    checks = run_checks()
    problems = sum(0 if check.ok else 1 for check in checks)
    if as_json:
        emit_json({"ok": problems == 0, "checks": [check.to_json() for check in checks]})
        if problems:
            sys.exit(1)
        return
    for check in checks:
        mark = ("WARN" if check.warning else "ok  ") if check.ok else "FAIL"
        say(f"{mark}  {check.name:<10} {check.message}")
        for line in check.lines:
            say(f"{'':<16} {line}")
    if problems:
        click.echo(f"\n{problems} problem{'s' if problems != 1 else ''} found", err=True)
        sys.exit(1)
