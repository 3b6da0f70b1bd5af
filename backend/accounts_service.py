"""The accounts service: add (log in or import), start, stop, restart, move, remove, bulk actions.

Plain methods over the database, Redis and the task dispatcher, used by the CLI and the bot. Every command
checks the target worker is online and active before dispatching; when it is not, the caller gets a clear
refusal, or (`when_back=True`) the desired state is recorded and the backend starts the account when the
worker is back. Secrets are encrypted before they leave the service and are never returned in views.

`AccountService` is composed of one class per concern, each on `backend.account_base.AccountServiceBase`:
views (`backend.account_views`) → onboarding (`backend.onboarding`), and lifecycle
(`backend.account_lifecycle`).
"""

from __future__ import annotations

from backend.account_lifecycle import AccountLifecycle
from backend.onboarding import Onboarding


class AccountService(AccountLifecycle, Onboarding):
    """Every account action of the control plane (see the module's docstring)."""
