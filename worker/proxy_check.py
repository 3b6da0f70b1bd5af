"""Checks of pool proxies from this worker: a real connection through each proxy to a data centre, timed.

A SOCKS5, SOCKS4 or HTTP proxy is asked to open a tunnel (SOCKS CONNECT / HTTP CONNECT, with its credentials)
to the data centre of an account that uses it (the address in the account's session), or to the custom
endpoint (TG_MTPROTO_DC) when there is one, and through it the data centre is asked for the first step of a
key exchange (req_pq_multi, unencrypted, as every new connection starts): a proxy that says yes to the tunnel
but reaches nothing fails. An MTProxy forwards only obfuscated MTProto under its secret: its check speaks
that, through Telethon's own MTProxy transport (the one the accounts use), and asks the same question of the
data centre the proxy serves (the account's DC id); a wrong secret or a proxy that reaches nothing fails. The
latency is the whole round trip.

`ProxyChecker` runs checks and records them in Redis (`celery_app.proxy_health`), keeping how many checks
of each proxy failed in a row here; `ProxyWatcher` checks, every PROXY_CHECK_SECONDS, the proxies this
worker's running accounts use, and reports which pool proxy each of them uses. Errors become codes; the
proxy's URL, host and credentials are never logged or written anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError

from celery_app import presence, proxy_health
from celery_app.contract import ProxyCheckResult, ProxyTarget
from celery_app.proxy_health import ProxyCheck
from common.crypto import SecretError
from common.sessions import parse_string_session
from common.validation import InvalidValue, ProxySpec, parse_proxy
from config import MTProtoEndpoint
from worker.clients import ClientSpec

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 10.0
INTERMEDIATE_TAG = b"\xee\xee\xee\xee"
REQ_PQ_MULTI = 0xBE7E8EF1
RES_PQ = 0x05162463
FIRST_CHECK_SECONDS = 5.0  # after the worker starts, the first round comes this soon (or at the interval)
DEFAULT_DC = 2
# Telegram's production data centres (what a session without an address of its own would dial).
TELEGRAM_DCS = {
    1: ("149.154.175.53", 443),
    2: ("149.154.167.51", 443),
    3: ("149.154.175.100", 443),
    4: ("149.154.167.91", 443),
    5: ("91.108.56.130", 443),
}


@dataclass(frozen=True)
class Probe:
    """One proxy to check and where to: `proxy` None when its URL could not be read here."""

    proxy_id: int
    proxy: ProxySpec | None
    host: str
    port: int
    dc_id: int = DEFAULT_DC  # the data centre an MTProxy is asked to forward to


@dataclass(frozen=True)
class ProbeOutcome:
    ok: bool
    latency_ms: float | None
    error: str = ""


def _error_code(error: BaseException) -> str:
    from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError
    from python_socks._errors import IncompleteReadError

    if isinstance(error, ProxyTimeoutError | TimeoutError | asyncio.TimeoutError):
        return "timed_out"
    if isinstance(error, ProxyError):
        if isinstance(error.__cause__ or error.__context__, IncompleteReadError):
            return "handshake"  # it hung up mid-handshake: what some proxies do to wrong credentials
        text = str(error).lower()
        if "auth" in text or "credentials" in text or "407" in text or "username" in text:
            return "auth_failed"
        return "proxy_refused"
    if isinstance(error, ProxyConnectionError | ConnectionRefusedError):
        cause = error.__cause__ or error.__context__
        if isinstance(error, ConnectionRefusedError) or isinstance(cause, ConnectionRefusedError):
            return "refused"
        return "unreachable"
    if isinstance(error, socket.gaierror | OSError):
        return "unreachable"
    return "error"


def _req_pq_multi(nonce: bytes) -> bytes:
    """An unencrypted MTProto req_pq_multi (the first message of every key exchange), intermediate-framed."""
    body = struct.pack("<I", REQ_PQ_MULTI) + nonce
    message_id = (int(time.time() * 2**32)) & ~3
    message = bytes(8) + struct.pack("<qi", message_id, len(body)) + body
    return struct.pack("<i", len(message)) + message


async def _ask_data_centre(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Send req_pq_multi over the intermediate transport; whether the answer is a resPQ with our nonce."""
    nonce = os.urandom(16)
    writer.write(INTERMEDIATE_TAG + _req_pq_multi(nonce))
    await writer.drain()
    (length,) = struct.unpack("<i", await reader.readexactly(4))
    if not 20 + 4 + 16 <= length <= 1024:
        return False  # a transport error (a negative code) or not MTProto
    answer = await reader.readexactly(length)
    constructor = struct.unpack("<I", answer[20:24])[0]
    return answer[:8] == bytes(8) and constructor == RES_PQ and answer[24:40] == nonce


def _unencrypted_req_pq_multi(nonce: bytes) -> bytes:
    """req_pq_multi as an unencrypted message, unframed (a Telethon connection frames it)."""
    return _req_pq_multi(nonce)[4:]


async def _ask_through_mtproxy(spec: ProxySpec, dc_id: int) -> str:
    """req_pq_multi through an MTProxy, obfuscated under its secret by Telethon's MTProxy transport: "" when the
    answer is a resPQ with our nonce, else a code (`proxy_refused`: it hung up, as an MTProxy does on a wrong
    secret or when its data centre is unreachable; `bad_reply`). Failing to reach the proxy itself raises."""
    from telethon.errors import InvalidBufferError
    from telethon.network.connection import ConnectionTcpMTProxyRandomizedIntermediate

    connection = ConnectionTcpMTProxyRandomizedIntermediate(
        spec.host, spec.port, dc_id, loggers=_LOGGERS, proxy=(spec.host, spec.port, spec.password)
    )
    try:
        await connection.connect()
    except ConnectionRefusedError:
        raise
    except ConnectionError:  # Telethon: "Proxy closed the connection after sending initial payload"
        return "proxy_refused"
    try:
        nonce = os.urandom(16)
        await connection.send(_unencrypted_req_pq_multi(nonce))
        answer = await connection.recv()
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        return "proxy_refused"
    except InvalidBufferError:
        return "bad_reply"
    finally:
        await connection.disconnect()
    if len(answer) < 40:
        return "bad_reply"
    constructor = struct.unpack("<I", answer[20:24])[0]
    return "" if answer[:8] == bytes(8) and constructor == RES_PQ and answer[24:40] == nonce else "bad_reply"


class _Loggers(dict):
    """What Telethon's connection classes take as `loggers`: a logger for any module name."""

    def __missing__(self, name: str) -> logging.Logger:
        return logging.getLogger(name)


_LOGGERS = _Loggers()


async def probe(
    spec: ProxySpec, host: str, port: int, timeout: float = PROBE_TIMEOUT, dc_id: int = DEFAULT_DC
) -> ProbeOutcome:
    """Through the proxy, ask the data centre at host:port (an MTProxy: the one it serves for `dc_id`) for the
    first step of a key exchange (req_pq_multi) and check its answer. Timed."""
    started = time.perf_counter()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            if spec.kind == "mtproxy":
                refusal = await _ask_through_mtproxy(spec, dc_id)
                if refusal:
                    return ProbeOutcome(False, None, refusal)
            else:
                from python_socks import ProxyType
                from python_socks.async_.asyncio import Proxy

                kinds = {"socks5": ProxyType.SOCKS5, "socks4": ProxyType.SOCKS4, "http": ProxyType.HTTP}
                proxy = Proxy(kinds[spec.kind], spec.host, spec.port, spec.username, spec.password, rdns=True)
                sock = await proxy.connect(dest_host=host, dest_port=port, timeout=timeout)
                reader, writer = await asyncio.open_connection(sock=sock)
                try:
                    answered = await _ask_data_centre(reader, writer)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return ProbeOutcome(False, None, "proxy_refused")  # the tunnel closed: nobody at the far end
                if not answered:
                    return ProbeOutcome(False, None, "bad_reply")
    except Exception as error:  # noqa: BLE001 - every failure is a code; the proxy's words are not kept
        return ProbeOutcome(False, None, _error_code(error))
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    return ProbeOutcome(True, round((time.perf_counter() - started) * 1000, 1))


class ProxyChecker:
    """Runs checks (any thread) and records them; remembers consecutive failures per proxy on this worker."""

    def __init__(
        self, redis: Redis, worker: str, every: float, endpoint: MTProtoEndpoint | None, timeout: float = PROBE_TIMEOUT
    ) -> None:
        self.redis = redis
        self.worker = worker
        self.every = every
        self.endpoint = endpoint
        self.timeout = timeout
        self._failures: dict[int, int] = {}
        self._lock = threading.Lock()

    def data_centre(self, session: str | None = None, dc_id: int | None = None) -> int:
        """Which data centre a check asks for: the custom endpoint's, else the session's, else `dc_id`."""
        if self.endpoint is not None:
            return self.endpoint.dc_id
        if session:
            with contextlib.suppress(InvalidValue):
                return parse_string_session(session).dc_id
        return dc_id if dc_id in TELEGRAM_DCS else DEFAULT_DC

    def destination(self, session: str | None = None, dc_id: int | None = None) -> tuple[str, int]:
        """Where a check connects to: the custom endpoint, else the session's data centre, else DC `dc_id`."""
        if self.endpoint is not None:
            return self.endpoint.host, self.endpoint.port
        if session:
            with contextlib.suppress(InvalidValue):
                data = parse_string_session(session)
                return data.server_address, data.port
        return TELEGRAM_DCS.get(dc_id or DEFAULT_DC, TELEGRAM_DCS[DEFAULT_DC])

    def check(self, probes: Iterable[Probe]) -> list[ProxyCheckResult]:
        """Check each proxy (side by side), record the outcomes in Redis, and return them."""
        wanted = {item.proxy_id: item for item in probes}  # one check per proxy
        if not wanted:
            return []

        async def run_all() -> list[ProbeOutcome]:
            async def one(item: Probe) -> ProbeOutcome:
                if item.proxy is None:
                    return ProbeOutcome(False, None, "unreadable")
                return await probe(item.proxy, item.host, item.port, self.timeout, item.dc_id)

            return list(await asyncio.gather(*(one(item) for item in wanted.values())))

        outcomes = asyncio.run(run_all())
        results: list[ProxyCheckResult] = []
        with self._lock:
            for item, outcome in zip(wanted.values(), outcomes, strict=True):
                fails = 0 if outcome.ok else self._failures.get(item.proxy_id, 0) + 1
                self._failures[item.proxy_id] = fails
                results.append(
                    ProxyCheckResult(
                        proxy_id=item.proxy_id,
                        ok=outcome.ok,
                        latency_ms=outcome.latency_ms,
                        error=outcome.error,
                        failures=fails,
                    )
                )
        failed = [r.proxy_id for r in results if not r.ok]
        if failed:
            log.warning("proxy check: %d of %d failed (pool ids %s)", len(failed), len(results), failed)
        try:
            at = presence.server_time(self.redis)
            proxy_health.write_checks(
                self.redis,
                {
                    r.proxy_id: ProxyCheck(self.worker, r.ok, r.latency_ms, r.error, r.failures, at, self.every)
                    for r in results
                },
            )
        except RedisError as error:
            log.warning("proxy checks not recorded (%s)", error)
        return results


@dataclass(frozen=True)
class ProxyInUse:
    """What the watcher needs to know of one running account."""

    account_id: int
    proxy_id: int | None
    proxy: ProxySpec | None
    session: str


class ProxyWatcher:
    """Every `checker.every` seconds: report which pool proxy each running account uses, and check those."""

    def __init__(self, checker: ProxyChecker, in_use: Callable[[], list[ProxyInUse]]) -> None:
        self.checker = checker
        self.in_use = in_use
        self._stop = threading.Event()

    def run_once(self) -> list[ProxyCheckResult]:
        accounts = self.in_use()
        redis = self.checker.redis
        proxy_health.write_usage(
            redis,
            self.checker.worker,
            presence.server_time(redis),
            self.checker.every,
            {item.account_id: item.proxy_id for item in accounts},
        )
        probes: dict[int, Probe] = {}
        for item in accounts:
            if item.proxy_id is not None and item.proxy is not None and item.proxy_id not in probes:
                host, port = self.checker.destination(item.session)
                dc_id = self.checker.data_centre(item.session)
                probes[item.proxy_id] = Probe(item.proxy_id, item.proxy, host, port, dc_id)
        return self.checker.check(probes.values())

    def start(self) -> None:
        threading.Thread(target=self._run, name="proxy-checks", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        wait = min(self.checker.every, FIRST_CHECK_SECONDS)
        while not self._stop.wait(wait):
            wait = self.checker.every
            try:
                self.run_once()
            except RedisError as error:
                log.debug("proxies not checked (%s)", error)
            except Exception:  # the next round tries again
                log.exception("proxy checks failed")


def in_use(specs: Iterable[ClientSpec]) -> list[ProxyInUse]:
    """What the watcher needs of the specs of the accounts running here."""
    return [ProxyInUse(spec.account_id, spec.proxy_id, spec.proxy, spec.session) for spec in specs]


def probes_for(
    checker: ProxyChecker, targets: Iterable[ProxyTarget], decrypt: Callable[[str], str], running: list[ClientSpec]
) -> list[Probe]:
    """The probes for proxies the control plane asks about: to the data centre of an account using the proxy
    here, else to the one it names; a URL that cannot be read here is checked as failed (`unreadable`)."""
    sessions = {spec.proxy_id: spec.session for spec in running if spec.proxy_id is not None}
    probes = []
    for target in targets:
        try:
            proxy: ProxySpec | None = parse_proxy(decrypt(target.proxy_enc))
        except (SecretError, InvalidValue):
            proxy = None
        session = sessions.get(target.proxy_id)
        host, port = checker.destination(session, target.dc_id)
        probes.append(Probe(target.proxy_id, proxy, host, port, checker.data_centre(session, target.dc_id)))
    return probes
