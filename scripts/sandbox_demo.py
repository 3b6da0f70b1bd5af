"""The sandbox's demo fleet, made as a user would make it: `python -m scripts.sandbox_demo` (run by `make run`).

In the stack `make run` started in sandbox mode (its own database, Redis and SECRET_KEY, the worker pointed at
the sandbox), through the control plane's own services and nothing else:
1. one API app in the pool (the sandbox takes any);
2. `DEMO_ACCOUNTS` accounts, each created in the sandbox and then logged in through the normal login flow on
   the local worker (the code is sent by the sandbox; the worker's login client signs in);
3. the autoreply plugin on the first `AUTOREPLY_ON` accounts and the watch plugin on the next `WATCH_ON`;
4. every account started.
Every action is in the audit log as `cli:sandbox-demo`. It prints one line a step and exits 0 when done; a
step refused is said in one line (exit 1). Accounts it finds logged in already are left as they are.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from sandbox.control import ControlClient, SandboxRefusal, SandboxUnavailable, control_file

DEMO_ACCOUNTS = 20
DEMO_PHONE = "+99966200{:03d}"  # 99966 is Telegram's own prefix for test numbers: never a real person's
DEMO_API_ID, DEMO_API_HASH = 20001, "5a6d0b3c7e8f9a1b2c3d4e5f60718293"
AUTOREPLY_ON, WATCH_ON = 4, 2
AUTOREPLY = {
    "text": "Спасибо за сообщение! Я отвечу, как только смогу. / Thanks, I'll reply soon.",
    "cooldown_minutes": 1,
}
WATCH = {"patterns": ["invoice", "счёт", "/заказ №?\\d+/i"]}
ACTOR = "cli:sandbox-demo"
T = TypeVar("T")


def say(text: str) -> None:
    print(text, flush=True)


def until(what: str, attempt: Callable[[], T], timeout: float = 120.0) -> T:
    """`attempt()` until it stops raising a not-ready-yet error (the worker still coming up)."""
    from backend.errors import WorkerUnavailable
    from database.errors import WorkerNotFound

    deadline = time.monotonic() + timeout
    while True:
        try:
            return attempt()
        except (WorkerUnavailable, WorkerNotFound):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def main() -> int:
    from backend.cli.base import Context
    from backend.errors import FleetError
    from config import load_env_file
    from database.audit import acting_as

    load_env_file()
    local = Path(os.environ.get("FLEET_LOCAL_DIR") or Path(__file__).resolve().parent.parent / ".local")
    worker = os.environ["WORKER_NAME"]
    plane = Context("sandbox-demo").plane()  # the control plane as the CLI builds it (one place builds it)
    try:
        sandbox = ControlClient(control_file(local))
        with acting_as("shell", "sandbox-demo", ACTOR):
            return seed(plane, sandbox, worker)
    except (SandboxUnavailable, SandboxRefusal, FleetError) as error:
        say(f"the demo fleet was not made: {error}")
        return 1
    finally:
        plane.close()


def seed(plane: object, sandbox: ControlClient, worker: str) -> int:
    from backend.control_plane import ControlPlane

    assert isinstance(plane, ControlPlane)
    if not plane.apps.list():
        plane.apps.add(DEMO_API_ID, DEMO_API_HASH, name="sandbox", max_accounts=1000, actor=ACTOR)
    say(f"logging in {DEMO_ACCOUNTS} demo accounts on worker {worker} through the login flow…")

    def log_in(number: int) -> int:
        phone = DEMO_PHONE.format(number)
        try:
            made = sandbox.call("add_account", phone=phone, first_name=f"Demo {number}", username=f"demo{number:02d}")
            code = made["code"]
        except SandboxRefusal as refusal:
            if refusal.code != "account_exists":
                raise
            code = sandbox.call("code", who=phone)
        step = until("the login", lambda: plane.accounts.begin_login(worker, phone, actor=ACTOR))
        step = plane.accounts.submit_code(step.login_id, " ".join(code))  # typed with spaces, as a person would
        assert step.account is not None, step.state
        return step.account.id

    # One login after another, so that account N is @demoNN; the plugins on before the starts, so that each
    # account runs with them from its first connection; the starts (the slow part) side by side.
    ids = [log_in(number) for number in range(1, DEMO_ACCOUNTS + 1)]
    plane.plugins.enable("autoreply", ids[:AUTOREPLY_ON], AUTOREPLY, ACTOR)
    plane.plugins.enable("watch", ids[AUTOREPLY_ON : AUTOREPLY_ON + WATCH_ON], WATCH, ACTOR)
    with ThreadPoolExecutor(max_workers=4) as pool:
        for started in [pool.submit(plane.accounts.start, account_id, ACTOR) for account_id in ids]:
            started.result()  # a refused start is said (and the backend retries it: the account is desired running)
    first = ids[0]
    say(
        f"demo fleet ready: accounts {ids[0]}–{ids[-1]}; autoreply on {ids[:AUTOREPLY_ON]}, "
        f"watch on {ids[AUTOREPLY_ON : AUTOREPLY_ON + WATCH_ON]}\n"
        f"try: .venv/bin/python run_cli.py sandbox send --to {first} --text 'Здравствуйте'\n"
        f"     .venv/bin/python run_cli.py sandbox chat {first}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
