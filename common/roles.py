"""Who may do what: the four roles of a fleet's team and the capabilities each one holds.

Every action of the bot names the capability it needs (`bot.permissions`); the audit log records the role an
actor acted in. `ADMIN_IDS` are owners; the others come from the admins table (`run_cli.py admins`).
"""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    OWNER = "owner"  # everything, including what bears secrets (export, backup, restore, rekey, 2FA, admins)
    OPERATOR = "operator"  # workers and accounts: start, stop, move, operations, plugins, proxies
    VIEWER = "viewer"  # sees what an operator sees, changes nothing
    MODERATOR = "moderator"  # the board's section only


class Capability(enum.StrEnum):
    ANYONE = "anyone"  # the menu, the language, /cancel, /mute
    VIEW_FLEET = "view_fleet"  # workers, accounts, proxies, the summary: reading
    OPERATE = "operate"  # changing workers, accounts, proxies, plugins; running operations
    SECRETS = "secrets"  # export, 2FA, backup/restore, rekey, API apps, adding accounts, managing admins, audit
    MODERATE = "moderate"  # the board's statistics and moderation


ROLE_CAPABILITIES: dict[Role, frozenset[Capability]] = {
    Role.OWNER: frozenset(Capability),
    Role.OPERATOR: frozenset({Capability.ANYONE, Capability.VIEW_FLEET, Capability.OPERATE}),
    Role.VIEWER: frozenset({Capability.ANYONE, Capability.VIEW_FLEET}),
    Role.MODERATOR: frozenset({Capability.ANYONE, Capability.MODERATE}),
}

# What the CLI and the backend record as the role they acted in (they are not admins of the bot).
SHELL_ROLE = "shell"  # the CLI: whoever can run it on the control host (roles are not enforced there)
SYSTEM_ROLE = "system"  # the backend's own automatic actions


def can(role: Role | str | None, capability: Capability) -> bool:
    """Whether `role` holds `capability`; an unknown or missing role holds nothing."""
    try:
        return capability in ROLE_CAPABILITIES[Role(role)] if role is not None else False
    except ValueError:
        return False


def parse_role(text: str) -> Role:
    """A role as typed (case and spaces forgiven), or ValueError naming the four."""
    try:
        return Role(text.strip().lower())
    except ValueError:
        raise ValueError(f"'{text}' is not a role: choose one of {', '.join(r.value for r in Role)}") from None
