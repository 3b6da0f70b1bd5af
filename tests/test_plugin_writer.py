"""The plugin records in Redis: the desired configuration the control plane writes (`celery_app.plugin_config`),
and the statuses and events the worker writes (`worker.plugins.writer.PluginWriter`): fenced by the lease,
kept through a Redis outage."""

from __future__ import annotations

from redis import Redis

from celery_app import keys, plugin_config
from celery_app.events import WireEventKind
from celery_app.plugin_config import PluginStatus
from tests.support.plugin_harness import wire_events
from worker.plugins.writer import PluginWriter


def test_desired_configuration_and_version(redis_client: Redis) -> None:
    assert plugin_config.version(redis_client) is None
    plugin_config.write_desired_many(redis_client, {7: {"watch": {"patterns": ["x"]}, "autoreply": {"text": "a"}}})
    assert plugin_config.version(redis_client) == 1
    plugin_config.write_desired_many(redis_client, {7: {"watch": {"patterns": ["y"]}}, 8: {}})
    assert plugin_config.version(redis_client) == 2
    redis_client.hset(keys.account_plugins(8), "junk", "not json")
    assert plugin_config.read_desired(redis_client, [7, 8, 9]) == {7: {"watch": {"patterns": ["y"]}}, 8: {}, 9: {}}


def test_status_writes_are_fenced_by_the_lease_and_survive_a_redis_outage(redis_client: Redis) -> None:
    from scripts.embedded_redis import free_port

    writer = PluginWriter(redis_client, "w1", "w1/inst")
    redis_client.set(keys.worker_lease("w1", 2), "w1/newer")  # account 2 runs under a newer instance now
    redis_client.set(keys.worker_lease("w1", 3), "w1/inst")
    for account in (1, 2, 3):
        writer.status(account, "watch", PluginStatus("running"))
    assert writer.flush(5)
    found = plugin_config.read_status(redis_client, {1: "w1", 2: "w1", 3: "w1"})
    assert set(found[1]) == {"watch"} and found[2] == {} and set(found[3]) == {"watch"}
    writer.close()

    from redis.backoff import NoBackoff
    from redis.retry import Retry

    down = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    writer = PluginWriter(down, "w1", None)
    writer.MAX_PENDING_EVENTS = 3
    for index in range(5):
        writer.event(WireEventKind.PLUGIN_EVENT, 1, {"plugin": "p", "kind": "k", "text": str(index), "alert": False})
    for state in ("running", "failing", "blocked"):
        writer.status(1, "p", PluginStatus(state))
    assert not writer.flush(0.5)
    writer.redis = redis_client  # Redis is back
    assert writer.flush(10)
    texts = [event.data["text"] for event in wire_events(redis_client, "plugin.event")]
    assert texts == ["2", "3", "4"]  # the newest events kept
    assert plugin_config.read_status(redis_client, {1: "w1"})[1]["p"].state == "blocked"
    writer.close()
    down.close()
