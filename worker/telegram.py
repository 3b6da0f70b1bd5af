"""The real client factory: Telethon `TelegramClient`s built from a `ClientSpec`.

With a custom MTProto endpoint (`TG_MTPROTO_DC`), every session is pointed at it, including new login
sessions: Telethon gives a session without a server address Telegram's production DC at `connect()`, so the
address is set here, always, before the client exists. Flood waits are never slept through silently
(`flood_sleep_threshold=0`): the manager reports them. This is the only module that imports Telethon.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from config import MTProtoEndpoint
from worker.telethon_manager import ClientFactory, ClientSpec, TelegramClientLike

log = logging.getLogger(__name__)

DEVICE_MODEL = "Fleet worker"


def _proxy_arguments(spec: ClientSpec) -> dict[str, Any]:
    proxy = spec.proxy
    if proxy is None:
        return {}
    if proxy.kind == "mtproxy":
        from telethon import connection

        return {
            "connection": connection.ConnectionTcpMTProxyRandomizedIntermediate,
            "proxy": (proxy.host, proxy.port, proxy.password),
        }
    return {
        "proxy": {
            "proxy_type": proxy.kind,
            "addr": proxy.host,
            "port": proxy.port,
            "username": proxy.username,
            "password": proxy.password,
            "rdns": True,
        }
    }


def load_public_key(path: str) -> None:
    from telethon.crypto import rsa

    with open(path) as handle:
        rsa.add_key(handle.read(), old=False)  # a current key (RSA_PAD), not a legacy one
    log.info("using the MTProto server public key from %s", path)


def telethon_factory(endpoint: MTProtoEndpoint | None) -> ClientFactory:
    from telethon import TelegramClient
    from telethon.sessions import StringSession

    if endpoint is not None and endpoint.public_key_file:
        load_public_key(endpoint.public_key_file)

    def create(spec: ClientSpec) -> TelegramClientLike:
        session = StringSession(spec.session or None)
        if endpoint is not None:
            session.set_dc(endpoint.dc_id, endpoint.host, endpoint.port)
        client = TelegramClient(
            session,
            spec.api_id,
            spec.api_hash,
            flood_sleep_threshold=0,
            connection_retries=2,
            retry_delay=1,
            request_retries=2,
            timeout=10,
            device_model=DEVICE_MODEL,
            **_proxy_arguments(spec),
        )
        return client  # type: ignore[return-value]

    return create


def load_factory(dotted: str | None, endpoint: MTProtoEndpoint | None) -> ClientFactory:
    """The Telethon factory, or `module:callable` from FLEET_CLIENT_FACTORY (the tests' fake Telegram)."""
    if not dotted:
        return telethon_factory(endpoint)
    module_name, _, attribute = dotted.partition(":")
    factory = getattr(importlib.import_module(module_name), attribute or "factory")
    log.warning("using client factory %s instead of Telethon", dotted)
    return factory  # type: ignore[no-any-return]
