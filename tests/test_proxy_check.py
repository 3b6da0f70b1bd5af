"""The worker's proxy check through a real SOCKS5 server (pproxy) to the loopback MTProto server: the data centre
answers a key exchange's first step through the proxy, timed; a proxy that is gone, refuses the credentials or
opens a tunnel to nothing fails with a code; the checks land in Redis with how many failed in a row there, and
no URL, host or credential."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from celery_app import proxy_health
from celery_app.contract import ProxyTarget
from common.crypto import SecretBox
from common.validation import parse_proxy
from sandbox.mtproto import MTProtoServer
from scripts.embedded_redis import free_port
from tests.support.socks_proxy import SocksProxy
from worker.clients import ClientSpec
from worker.proxy_check import Probe, ProxyChecker, ProxyWatcher, in_use, probe, probes_for

SECRET = "proxy-check-secret-key-0123456789abcdefghij"


@pytest.fixture
def server() -> Iterator[MTProtoServer]:
    with MTProtoServer() as running:
        yield running


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[SocksProxy]:
    with SocksProxy(tmp_path, "fleet-user", "fleet-pa55") as running:
        yield running


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


def test_the_data_centre_answers_through_the_proxy_and_failures_are_codes(
    server: MTProtoServer, proxy: SocksProxy, tmp_path: Path
) -> None:
    wrong = parse_proxy(f"socks5://fleet-user:wrong@127.0.0.1:{proxy.port}")
    refused = run(probe(wrong, server.host, server.port))  # first: pproxy trusts an address once it authenticated
    assert (refused.ok, refused.error) == (False, "handshake")  # pproxy hangs up on wrong credentials
    outcome = run(probe(parse_proxy(proxy.url), server.host, server.port))
    assert outcome.ok and outcome.latency_ms is not None and 0 < outcome.latency_ms < 10_000
    assert proxy.tunnels_to(server.port) >= 1  # it went through the proxy
    nowhere = run(probe(parse_proxy(proxy.url), "127.0.0.1", free_port()))
    assert (nowhere.ok, nowhere.error) == (False, "proxy_refused")  # the tunnel opened onto nothing
    proxy.kill()
    gone = run(probe(parse_proxy(proxy.url), server.host, server.port))
    assert (gone.ok, gone.error) == (False, "refused")
    with SocksProxy(tmp_path) as plain:
        echo = run(probe(parse_proxy(plain.url), "127.0.0.1", plain.port))  # a SOCKS server is not a DC
        assert (echo.ok, echo.error) == (False, "bad_reply") or (echo.ok, echo.error) == (False, "proxy_refused")


def test_checks_are_recorded_with_the_failures_in_a_row_and_no_credentials(
    server: MTProtoServer, proxy: SocksProxy, redis_client: Redis
) -> None:
    checker = ProxyChecker(redis_client, "w1", 30.0, None)
    host, port = server.host, server.port
    spec = parse_proxy(proxy.url)
    [first] = checker.check([Probe(7, spec, host, port)])
    assert first.ok and first.failures == 0
    proxy.kill()
    results = [checker.check([Probe(7, spec, host, port)])[0] for _ in range(3)]
    assert [(r.ok, r.error, r.failures) for r in results] == [(False, "refused", n) for n in (1, 2, 3)]
    [recorded] = proxy_health.read_checks(redis_client, [7])[7]
    assert (recorded.worker, recorded.ok, recorded.failures, recorded.every) == ("w1", False, 3, 30.0)
    raw = str(redis_client.hgetall(proxy_health.proxy_health(7)))
    assert "fleet-pa55" not in raw and "fleet-user" not in raw and str(proxy.port) not in raw


def test_the_watcher_checks_the_proxies_in_use_towards_each_accounts_data_centre(
    server: MTProtoServer, proxy: SocksProxy, redis_client: Redis
) -> None:
    checker = ProxyChecker(redis_client, "w1", 30.0, None)
    session = server.session_string()  # names the loopback DC's address, as an imported session would
    running = [
        ClientSpec(1, "+15550000001", 1, "h", session, parse_proxy(proxy.url), proxy_id=3),
        ClientSpec(2, "+15550000002", 1, "h", session, parse_proxy(proxy.url), proxy_id=3),
        ClientSpec(4, "+15550000004", 1, "h", session, None),
    ]
    watcher = ProxyWatcher(checker, lambda: in_use(running))
    [result] = watcher.run_once()
    assert result.proxy_id == 3 and result.ok
    assert proxy.tunnels_to(server.port) == 1  # one check per proxy, however many accounts use it
    usage = proxy_health.read_usage(redis_client, ["w1"])["w1"]
    assert usage.accounts == {1: 3, 2: 3, 4: None}

    box = SecretBox(SECRET)
    targets = [
        ProxyTarget(proxy_id=3, proxy_enc=box.encrypt(proxy.url)),
        ProxyTarget(proxy_id=9, proxy_enc=SecretBox("another-key-0123456789abcdefghijklmnop").encrypt(proxy.url)),
    ]
    asked = checker.check(probes_for(checker, targets, box.decrypt, running))
    assert [(r.proxy_id, r.ok, r.error) for r in asked] == [(3, True, ""), (9, False, "unreadable")]


def test_an_mtproxy_is_checked_by_speaking_obfuscated_mtproto_under_its_secret() -> None:
    """The loopback server also serves MTProxy connections under its secret: the check asks the data centre
    through it as the accounts' transport does; a wrong secret or nobody listening fails with a code."""
    secret = bytes(range(16))
    with MTProtoServer(mtproxy_secret=secret) as mtproxy:
        good = parse_proxy(f"mtproxy://{secret.hex()}@127.0.0.1:{mtproxy.port}")
        outcome = run(probe(good, "ignored", 0, dc_id=2))
        assert outcome.ok and outcome.latency_ms is not None, outcome
        wrong = parse_proxy(f"mtproxy://{bytes(16).hex()}@127.0.0.1:{mtproxy.port}")
        refused = run(probe(wrong, "ignored", 0, timeout=5, dc_id=2))
        assert (refused.ok, refused.error) == (False, "proxy_refused"), refused  # it hangs up on a wrong secret
    gone = run(probe(good, "ignored", 0, dc_id=2))
    assert (gone.ok, gone.error) == (False, "refused")
