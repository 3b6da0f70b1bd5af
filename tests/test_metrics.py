"""The backend's /metrics (METRICS_LISTEN) against the fleet's real state: real backend and worker processes."""

from __future__ import annotations

import socket
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from celery_app import keys
from tests.support.fake_telegram import session_for
from tests.support.stack import Stack, wait_until

pytestmark = pytest.mark.processes
API_HASH = "0123456789abcdef0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return {}
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_metrics_match_the_fleet(stack: Stack, telegram: Any, redis_client: Redis) -> None:
    port = free_port()
    stack.start_backend(METRICS_LISTEN=f"127.0.0.1:{port}")
    stack.start_worker("w1")
    second = stack.start_worker("w2")
    wait_until(lambda: value(scrape(port), "fleet_workers", status="online") == 2, 60, message="two workers online")
    wait_until(lambda: stack.cli("show", "w1").returncode == 0, 30, message="w1 recorded")
    for index in range(3):
        phone = f"+1555000{index:04d}"
        imported = stack.cli(
            "accounts", "import", "--worker", "w1", "--session-string", session_for(phone), "--api-id", "12345",
            "--api-hash", API_HASH, "--phone", phone,
        )  # fmt: skip
        assert imported.returncode == 0, imported.stderr
    for account_id in ("1", "2"):
        assert stack.cli("accounts", "start", account_id).returncode == 0
    redis_client.hincrby(keys.ALERTS_SENT, "worker.offline", 2)

    def settled() -> dict[Any, float] | None:
        samples = scrape(port)
        running = value(samples, "fleet_accounts", worker="w1", status="running")
        probed = value(samples, "fleet_task_roundtrip_seconds_count") or 0
        return samples if running == 2 and probed >= 1 else None

    samples = wait_until(settled, 90, interval=0.5, message="two accounts running and a probe answered")
    assert value(samples, "fleet_accounts", worker="w1", status="stopped") == 1
    assert value(samples, "fleet_workers", status="offline") == 0
    assert value(samples, "fleet_workers_active") == 2
    assert (value(samples, "fleet_worker_heartbeat_age_seconds", worker="w2") or -1) >= 0  # present, a real age
    assert (value(samples, "fleet_scan_duration_seconds_count") or 0) >= 1
    assert (value(samples, "fleet_events_applied_total") or 0) >= 1
    assert value(samples, "fleet_alerts_sent_total", kind="worker.offline") == 2
    assert value(samples, "fleet_state_readable") == 1
    # Let a worker die: it turns offline there too, and its age grows.
    stack.stop(second, sig=9)
    wait_until(
        lambda: value(scrape(port), "fleet_workers", status="offline") == 1, 60, message="w2 offline in the metrics"
    )
