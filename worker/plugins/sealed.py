"""A plugin's secret configuration as this worker gets it: each secret value sealed to the worker's own key by
the control plane (`backend.plugin_secrets`), as `plugin_config.sealed_field(account, plugin, key)`.

`open_config` gives the configuration with those values opened, for the plugin to hold in memory only; a value
that does not open here (sealed to another worker's key: the account moved and the control plane has not sealed
it again yet, or a copy from elsewhere) leaves the plugin unloaded with `plugin_secret_unopened` in its status,
naming the key and never the value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery_app.plugin_config import sealed_field
from common.details import Detail, detail
from common.sealing import is_sealed

Opener = Callable[[str, str], str]  # (sealed value, field) -> clear value; ValueError when it does not open


def open_config(
    config: dict[str, Any], account_id: int, plugin: str, opener: Opener | None
) -> tuple[dict[str, Any], Detail | None]:
    """`config` with its sealed values opened, and None; or `config` as it came, and why it cannot be used."""
    sealed = sorted(key for key, value in config.items() if is_sealed(value))
    if not sealed:
        return config, None
    clear = dict(config)
    for key in sealed:
        if opener is None:
            return config, detail("plugin_secret_unopened", field=key)
        try:
            clear[key] = opener(config[key], sealed_field(account_id, plugin, key))
        except ValueError:  # SecretError, SealError: one line each, nothing secret in them
            return config, detail("plugin_secret_unopened", field=key)
    return clear, None
