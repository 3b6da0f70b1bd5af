"""The plugins a process can load, and whether a configuration fits one (`worker.plugins` runs them).

Shared by the worker (which loads plugins into accounts) and the control plane (which lists them and checks a
configuration before it is stored): discovery imports the plugin modules, nothing here starts anything.

Discovery (`discover`): the shipped package `fleet_plugins`, the entry-point group `fleet.plugins` of installed
distributions, and every module or package in PLUGINS_DIR (files starting with `_` or `.` are skipped: put
helpers there); on a name clash the later source wins, with a warning. A plugin that cannot be imported, has
no `setup` or declares a schema that is not valid JSON Schema is listed with its error (logged once) and
cannot be enabled; the others are unaffected. `validate_config` checks a configuration against the schema
(`jsonschema_rs`) and the module's own `validate`.

Secret configuration: a plugin names the top-level keys of its configuration that hold secrets (an API token,
a webhook's password) in `SECRET_CONFIG` (`PluginInfo.secret_keys`); their values are strings. The control
plane keeps them encrypted and seals them to the worker that runs the account (`backend.plugin_secrets`); what
`validate_config` says about a configuration never repeats a secret value (`MASK` in its place).
"""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import logging
import os
import pkgutil
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import jsonschema_rs

from common.redaction import safe_detail

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "fleet.plugins"
SHIPPED_PACKAGE = "fleet_plugins"
DEFAULT_SCHEMA: dict[str, Any] = {"type": "object"}
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
MAX_ERROR = 200
MASK = "***"  # what is shown in place of a secret value


def describe(error: BaseException, secrets: Sequence[Any] = ()) -> str:
    """`ExceptionType: message` on one line, short, with anything phone-like masked (and `secrets`: MASK)."""
    message = safe_detail(_masked(str(error), secrets), MAX_ERROR)
    name = type(error).__name__
    return safe_detail(f"{name}: {message}" if message else name, MAX_ERROR)


# --- discovery --------------------------------------------------------------------------------------------


@dataclass
class PluginInfo:
    name: str
    description: str
    schema: dict[str, Any]
    source: str  # "builtin", "entry point" or the file's path
    module: Any | None  # None when it could not be imported
    error: str | None = None  # why it cannot be used (one line); None when usable
    validator: Any = field(default=None, repr=False, compare=False)
    secret_keys: frozenset[str] = frozenset()  # top-level configuration keys holding secrets (`SECRET_CONFIG`)


def _broken(name: str, source: str, error: str, module: Any | None = None) -> PluginInfo:
    log.error("plugin %s (%s) cannot be used: %s", name, source, error)
    return PluginInfo(name, "", dict(DEFAULT_SCHEMA), source, module, error)


def _inspect(module: Any, default_name: str, source: str) -> PluginInfo:
    """A loaded module (or object) checked against the plugin API."""
    name = getattr(module, "NAME", None) or default_name
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        return _broken(str(name), source, f"NAME {name!r} is not a valid plugin name (letters, digits, _ . -)")
    description = getattr(module, "DESCRIPTION", None) or (inspect.getdoc(module) or "").split("\n", 1)[0]
    setup = getattr(module, "setup", None)
    if not callable(setup):
        return _broken(name, source, "it has no setup(client, context) function", module)
    validate = getattr(module, "validate", None)
    if validate is not None and not callable(validate):
        return _broken(name, source, "its validate attribute is not a function", module)
    schema = getattr(module, "CONFIG_SCHEMA", None)
    if schema is None:
        schema = dict(DEFAULT_SCHEMA)
    if not isinstance(schema, dict):
        return _broken(name, source, "CONFIG_SCHEMA must be a JSON Schema object (a dict)", module)
    try:
        jsonschema_rs.meta.validate(schema)
        validator = jsonschema_rs.validator_for(schema)
    except (jsonschema_rs.ValidationError, ValueError, TypeError) as error:
        first = str(getattr(error, "message", None) or error).strip().splitlines()[0]
        return _broken(name, source, f"CONFIG_SCHEMA is not a valid JSON Schema: {safe_detail(first, 160)}", module)
    secret = getattr(module, "SECRET_CONFIG", None) or ()
    if isinstance(secret, str) or not all(isinstance(key, str) and key for key in _iterable(secret)):
        return _broken(name, source, "SECRET_CONFIG must be a set of configuration keys (strings)", module)
    about = safe_detail(str(description), 200)
    return PluginInfo(name, about, schema, source, module, None, validator, secret_keys=frozenset(secret))


def _iterable(value: Any) -> list[Any]:
    try:
        return list(value)
    except TypeError:
        return [None]


def _import_failure(error: BaseException) -> str:
    return f"import failed: {describe(error)}"


def _shipped() -> list[PluginInfo]:
    try:
        package = importlib.import_module(SHIPPED_PACKAGE)
    except Exception as error:  # noqa: BLE001 - reported, the worker runs without them
        log.error("the shipped plugins (%s) cannot be imported: %s", SHIPPED_PACKAGE, describe(error))
        return []
    found: list[PluginInfo] = []
    for entry in sorted(pkgutil.iter_modules(package.__path__), key=lambda entry: entry.name):
        if entry.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"{SHIPPED_PACKAGE}.{entry.name}")
        except Exception as error:  # noqa: BLE001 - one broken plugin must not hide the others
            found.append(_broken(entry.name, "builtin", _import_failure(error)))
            continue
        found.append(_inspect(module, entry.name, "builtin"))
    return found


def _entry_points() -> list[PluginInfo]:
    found: list[PluginInfo] = []
    seen: set[tuple[str, str]] = set()
    for entry in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda entry: entry.name):
        if (entry.name, entry.value) in seen:  # the same distribution on sys.path twice
            continue
        seen.add((entry.name, entry.value))
        source = "entry point"
        try:
            module = entry.load()
        except Exception as error:  # noqa: BLE001
            found.append(_broken(entry.name, source, _import_failure(error)))
            continue
        found.append(_inspect(module, entry.name, source))
    return found


def _load_file(stem: str, path: str, package_dir: str | None) -> ModuleType:
    module_name = f"fleet_plugin__{re.sub(r'[^0-9A-Za-z_]', '_', stem)}"
    spec = importlib.util.spec_from_file_location(
        module_name, path, submodule_search_locations=[package_dir] if package_dir else None
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _directory(plugins_dir: str) -> list[PluginInfo]:
    found: list[PluginInfo] = []
    try:
        entries = sorted(os.listdir(plugins_dir))
    except OSError as error:
        log.error("PLUGINS_DIR %s cannot be read: %s", plugins_dir, describe(error))
        return found
    for entry in entries:
        if entry.startswith(("_", ".")):
            continue
        path = os.path.join(plugins_dir, entry)
        if entry.endswith(".py") and os.path.isfile(path):
            stem, file, package_dir = entry[:-3], path, None
        elif os.path.isfile(os.path.join(path, "__init__.py")):
            stem, file, package_dir = entry, os.path.join(path, "__init__.py"), path
        else:
            continue
        try:
            module = _load_file(stem, file, package_dir)
        except BaseException as error:
            if isinstance(error, KeyboardInterrupt):
                raise
            found.append(_broken(stem, path, _import_failure(error)))
            continue
        found.append(_inspect(module, stem, path))
    return found


def discover(plugins_dir: str | None) -> dict[str, PluginInfo]:
    """Every plugin this process can load, by name: shipped, from entry points, from `plugins_dir`."""
    catalogue: dict[str, PluginInfo] = {}
    sources = [_shipped(), _entry_points(), _directory(plugins_dir) if plugins_dir else []]
    for infos in sources:
        for info in infos:
            earlier = catalogue.get(info.name)
            if earlier is not None:
                log.warning("plugin %s from %s replaces the one from %s", info.name, info.source, earlier.source)
            catalogue[info.name] = info
    return catalogue


# --- configuration ----------------------------------------------------------------------------------------


def _path(parts: Sequence[str | int]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def validate_config(info: PluginInfo, config: Any) -> list[str]:
    """What is wrong with `config` for this plugin, in words; an empty list when it is valid. A secret value is
    never repeated: a problem with one names its key and the rule it breaks, and `MASK` stands in for it."""
    if info.error is not None:
        return [f"plugin {info.name} cannot be used: {info.error}"]
    if not isinstance(config, dict):
        return ["the configuration must be a JSON object"]
    secrets = secret_values(info, config)
    problems: list[str] = []
    for key in sorted(info.secret_keys):
        if key in config and not isinstance(config[key], str):
            problems.append(f"{key}: a secret value must be a string")
    validator = info.validator or jsonschema_rs.validator_for(info.schema)
    for error in validator.iter_errors(config):
        path = list(error.instance_path)
        where = _path(path)
        if path and path[0] in info.secret_keys:
            rule = type(error.kind).__name__
            message = f"{where}: the secret value breaks the schema's {rule[:1].lower() + rule[1:]} rule"
        else:
            message = f"{where}: {error.message}" if where else error.message
        message = _masked(message, secrets)
        if message not in problems:
            problems.append(message)
    if problems:
        return problems
    check = getattr(info.module, "validate", None)
    if check is not None:
        try:
            extra = check(config)
        except Exception as error:  # noqa: BLE001 - a broken validator is the plugin's bug, shown as such
            return [f"the plugin's validate() raised {describe(error, secrets)}"]
        problems.extend(_masked(str(item), secrets) for item in extra or [])
    return problems


def secret_values(info: PluginInfo, config: dict[str, Any]) -> list[Any]:
    """The values of `config`'s secret keys (to mask wherever a text might repeat them: `describe`)."""
    return [config[key] for key in sorted(info.secret_keys) if config.get(key) not in (None, "")]


def _masked(text: str, secrets: Sequence[Any]) -> str:
    """`text` with every secret value in it (quoted as JSON renders it, or bare) replaced by MASK."""
    for value in secrets:
        for shown in {json.dumps(value, ensure_ascii=False), json.dumps(value), str(value)}:
            if len(shown) >= 3 or shown.startswith('"'):
                text = text.replace(shown, json.dumps(MASK) if shown.startswith('"') else MASK)
    return text


def shown_config(info: PluginInfo | None, config: dict[str, Any]) -> dict[str, Any]:
    """`config` as it may be shown: each secret key's value (of `info`) replaced by MASK; every value masked
    when the plugin is unknown here (which keys are secret cannot be told)."""
    if info is None or info.error is not None:
        return {key: MASK for key in config}
    return {
        key: MASK if key in info.secret_keys and value not in (None, "") else value for key, value in config.items()
    }


def with_defaults(schema: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """A copy of `config` with the schema's top-level property defaults filled in where absent."""
    filled = copy.deepcopy(config)
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for name, spec in properties.items():
            if isinstance(spec, dict) and "default" in spec and name not in filled:
                filled[name] = copy.deepcopy(spec["default"])
    return filled
