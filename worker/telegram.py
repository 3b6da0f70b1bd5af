"""The real client factory: Telethon `TelegramClient`s built from a `ClientSpec`.

With a custom MTProto endpoint (`TG_MTPROTO_DC`), every session is pointed at it, including new login
sessions: Telethon gives a session without a server address Telegram's production DC at `connect()`, so the
address is set here, always, before the client exists. Flood waits are never slept through silently
(`flood_sleep_threshold=0`): the manager reports them. This is the only module that imports Telethon.

Each client presents its account's device identity (`ClientSpec.device`: device model, system and app
versions, languages, and the official app's language pack if the account came with one). The manager paces
the connects it makes; Telethon's own re-dials (its retries within a connect, and its automatic reconnect
after a dropped connection) go through `_paced`, which waits a jittered moment and a turn in the same bucket.

A worker runs thousands of clients, so each costs as little as Telethon allows (bench/real_scale.py):
an account without plugins does not receive updates (`ClientSpec.receive_updates`: its connection is not
subscribed, Telethon keeps no update state for it and never asks for a difference; `enable_updates` turns
them on when a plugin is enabled), the user a connect fetched answers the runner's checks right after it,
the session keeps at most ENTITY_LIMIT users and chats, and all clients share one set of loggers.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import random
from typing import Any

from celery_app.contract import DeviceIdentity
from common.devices import choose_identity
from config import MTProtoEndpoint
from worker.clients import ClientFactory, ClientSpec, TelegramClientLike
from worker.pacing import ConnectPacer

log = logging.getLogger(__name__)

REDIAL_JITTER = 1.0  # at most this many seconds at random before Telethon dials the same connection again
ENTITY_LIMIT = 1000  # users and chats a session keeps (the newest seen): Telethon's own keeps every one


class _Loggers(dict[str, logging.Logger]):
    """What Telethon's network classes take as `loggers`, as Telethon makes it, but one for every client:
    Telethon defines a class of its own inside each client's constructor."""

    def __missing__(self, key: str) -> logging.Logger:
        if key.startswith("telethon."):
            key = key.split(".", maxsplit=1)[1]
        logger = logging.getLogger("telethon").getChild(key)
        self[key] = logger
        return logger


_LOGGERS = _Loggers()


def device_arguments(device: DeviceIdentity) -> dict[str, str]:
    """`TelegramClient` arguments for a device identity (the language pack is set apart: `_apply_lang_pack`)."""
    return {
        "device_model": device.device_model,
        "system_version": device.system_version,
        "app_version": device.app_version,
        "lang_code": device.lang_code,
        "system_lang_code": device.system_lang_code,
    }


def _apply_lang_pack(client: Any, lang_pack: str) -> None:
    """Telethon sends an empty language pack (packs are for the official apps); an account exported from an
    official app keeps the one it had, set on the InitConnection request Telethon sends at every connect."""
    if lang_pack:
        client._init_request.lang_pack = lang_pack


def _paced(base: type, pacer: ConnectPacer) -> type:
    """A subclass of Telethon's connection class `base` whose every dial after the first (the manager paces
    that one) waits a jittered moment and its turn in the worker's connect bucket."""

    class Paced(base):  # type: ignore[misc, valid-type]
        _dials = 0

        async def connect(self, timeout: float | None = None, ssl: Any = None) -> None:
            if self._dials:
                await asyncio.sleep(random.uniform(0.0, REDIAL_JITTER))
                await pacer.wait_turn()  # cancelled (the client disconnected meanwhile): the turn is returned
            self._dials += 1
            await super().connect(timeout=timeout, ssl=ssl)

    Paced.__name__ = Paced.__qualname__ = f"Paced{base.__name__}"
    return Paced


def _proxy_arguments(spec: ClientSpec, connections: dict[str, type]) -> dict[str, Any]:
    proxy = spec.proxy
    if proxy is None:
        return {"connection": connections["tcp"]}
    if proxy.kind == "mtproxy":
        return {"connection": connections["mtproxy"], "proxy": (proxy.host, proxy.port, proxy.password)}
    return {
        "connection": connections["tcp"],
        "proxy": {
            "proxy_type": proxy.kind,
            "addr": proxy.host,
            "port": proxy.port,
            "username": proxy.username,
            "password": proxy.password,
            "rdns": True,
        },
    }


def load_public_key(path: str) -> None:
    from telethon.crypto import rsa

    with open(path) as handle:
        rsa.add_key(handle.read(), old=False)  # a current key (RSA_PAD), not a legacy one
    log.info("using the MTProto server public key from %s", path)


def _session_class() -> type:
    """Telethon's StringSession keeping at most ENTITY_LIMIT users and chats, by id (Telethon's keeps a row
    for every user and chat any answer or update ever named, and finds one by reading them all)."""
    from telethon.sessions import StringSession

    class FleetSession(StringSession):  # type: ignore[misc]
        def __init__(self, string: str | None = None) -> None:
            super().__init__(string)
            self._by_id: dict[int, tuple[Any, ...]] = {}
            self._entities = self._by_id.values()  # what Telethon's lookups read

        def process_entities(self, tlo: Any) -> None:
            for row in self._entities_to_rows(tlo):
                self._by_id.pop(row[0], None)  # the newest last: the oldest go first
                self._by_id[row[0]] = row
            while len(self._by_id) > ENTITY_LIMIT:
                del self._by_id[next(iter(self._by_id))]

        def get_entity_rows_by_id(self, id: int, exact: bool = True) -> Any:
            row = self._by_id.get(id) if exact else None
            return (row[0], row[1]) if row is not None else super().get_entity_rows_by_id(id, exact)

    return FleetSession


def _fleet_client_class() -> type:
    """Telethon's client, made to tell the manager what Telegram said instead of swallowing it, and to cost
    little when it does not need updates.

    Telethon's `is_user_authorized()` turns every RPC error into False and `get_me()` turns every
    UnauthorizedError into None: a banned account (USER_DEACTIVATED_BAN is a 401) would read as merely not
    authorized. Here both make the request and let Telegram's error through, for `classify` to name (only
    "not logged in yet" stays None in `get_me()`, which Telethon asks itself during a login). A connect asks
    who the session is logged in as (Telethon does, when it has no update state); that answer is the next
    `is_user_authorized()` and the next `get_me()` (the runner's, right after it) instead of asking again.

    Without updates (`receive_updates=False`) Telethon still fetched the update state at every connect and
    asked for the difference every 15 minutes; here it keeps none until `enable_updates()`.
    """
    from telethon import TelegramClient, errors, functions, types

    class FleetClient(TelegramClient):  # type: ignore[misc]
        _connecting = False
        _user_at_connect: Any = None  # the user the last connect fetched: the next get_me() answer
        _authorized_at_connect = False  # ... and so the next is_user_authorized() answer

        async def connect(self) -> None:
            self._user_at_connect, self._authorized_at_connect = None, False
            self._connecting = True
            try:
                await super().connect()
            finally:
                self._connecting = False

        async def is_user_authorized(self) -> bool:
            if self._authorized_at_connect:
                self._authorized_at_connect = False
                return True
            await self(functions.updates.GetStateRequest())
            return True

        async def get_me(self, input_peer: bool = False) -> Any:
            if self._user_at_connect is not None and not self._connecting:
                user, self._user_at_connect = self._user_at_connect, None
                return user
            try:
                users = await self(functions.users.GetUsersRequest([types.InputUserSelf()]))
            except (errors.AuthKeyUnregisteredError, errors.SessionPasswordNeededError):
                # Not logged in (yet): Telethon's own connect() and sign_in() ask this of a new login. A revoked
                # session is still told apart: the runner's is_user_authorized() raises AUTH_KEY_UNREGISTERED.
                return None
            user = users[0] if users else None
            if self._connecting:
                self._user_at_connect, self._authorized_at_connect = user, user is not None
            return user

        async def _on_login(self, user: Any) -> Any:
            self._logged_in_as = user
            if not self._no_updates:
                return await super()._on_login(user)  # the update state: getState and getDifference
            self._mb_entity_cache.set_self_user(user.id, user.bot, user.access_hash)
            self._authorized = True
            return user

        async def enable_updates(self) -> None:
            """Receive updates from now on (a plugin was enabled): a request outside invokeWithoutUpdates
            subscribes the connection, and Telethon's update state starts from now."""
            if not self._no_updates:
                return
            self._no_updates = False
            user = getattr(self, "_logged_in_as", None) or await self.get_me()
            if user is not None:
                await super()._on_login(user)

    return FleetClient


def telethon_factory(endpoint: MTProtoEndpoint | None, pacer: ConnectPacer | None = None) -> ClientFactory:
    """Builds Telethon clients; `pacer` is the worker's connect bucket (the manager's), for Telethon's re-dials."""
    from telethon import connection

    client_class = _fleet_client_class()
    session_class = _session_class()

    if endpoint is not None and endpoint.public_key_file:
        load_public_key(endpoint.public_key_file)
    redials = pacer or ConnectPacer(1000.0)
    connections = {
        "tcp": _paced(connection.ConnectionTcpFull, redials),
        "mtproxy": _paced(connection.ConnectionTcpMTProxyRandomizedIntermediate, redials),
    }

    def create(spec: ClientSpec) -> TelegramClientLike:
        session = session_class(spec.session or None)
        if endpoint is not None:
            session.set_dc(endpoint.dc_id, endpoint.host, endpoint.port)
        # The runtime always gives the account's own identity; a bare spec gets the one chosen for its phone.
        device = spec.device or choose_identity(spec.phone)
        client = client_class(
            session,
            spec.api_id,
            spec.api_hash,
            # A dropped connection ends the client's run (`disconnected` completes) and the manager reconnects,
            # paced and with backoff, checking the session again: Telethon's own reconnect would swallow a
            # revocation (its after-reconnect get_me() hides AUTH_KEY_UNREGISTERED) and keep reading running.
            auto_reconnect=False,
            flood_sleep_threshold=0,
            receive_updates=spec.receive_updates,
            connection_retries=2,
            retry_delay=1,
            request_retries=2,
            timeout=10,
            **device_arguments(device),
            **_proxy_arguments(spec, connections),
        )
        _apply_lang_pack(client, device.lang_pack)
        client._log = client._sender._loggers = _LOGGERS  # the client's own (a class per client) goes
        return client  # type: ignore[return-value]

    return create


def load_factory(
    dotted: str | None, endpoint: MTProtoEndpoint | None, pacer: ConnectPacer | None = None
) -> ClientFactory:
    """The Telethon factory, or `module:callable` from FLEET_CLIENT_FACTORY (the tests' fake Telegram)."""
    if not dotted:
        return telethon_factory(endpoint, pacer)
    module_name, _, attribute = dotted.partition(":")
    factory = getattr(importlib.import_module(module_name), attribute or "factory")
    log.warning("using client factory %s instead of Telethon", dotted)
    return factory  # type: ignore[no-any-return]
