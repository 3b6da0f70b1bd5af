"""The control plane's assignments decide which worker may hold an account's lease; a worker's keys are its own.

Real Redis. What one worker host could claim through the keys it can write is refused by what readers read.
"""

from __future__ import annotations

import threading

from redis import Redis

from backend.dispatch import TaskDispatcher
from celery_app import keys, leases, presence
from celery_app.contract import AccountRef, AccountSpec, StartAccount, StartAccounts, TaskName, queue_for
from celery_app.presence import WorkerInfo

A, B = "wa/inst-a", "wb/inst-b"
TOKEN = "t" * 40  # an encrypted value as the wire carries it (nothing opens it here)


def _known(redis: Redis, *names: str) -> None:
    for name in names:
        presence.register(redis, WorkerInfo(name, "addr", "h", 1, "0", 0, f"inst-{name[1:]}"), 60)


def test_an_account_given_to_another_worker_cannot_be_taken(redis_client: Redis) -> None:
    leases.assign(redis_client, 5, "wb")
    assert leases.acquire(redis_client, 5, A, 30) == (False, "wb/")
    assert leases.acquire(redis_client, 5, B, 30) == (True, B)
    assert redis_client.get(keys.worker_lease("wb", 5)) == B and not redis_client.exists(keys.worker_lease("wa", 5))


def test_a_move_hands_over_only_once_the_old_worker_let_go(redis_client: Redis) -> None:
    _known(redis_client, "wa", "wb")
    leases.assign(redis_client, 5, "wa")
    assert leases.acquire(redis_client, 5, A, 30)[0]
    leases.assign(redis_client, 5, "wb")  # moved
    assert leases.acquire(redis_client, 5, B, 30) == (False, A)  # wa still holds it: never both at once
    assert leases.sweep(redis_client) == 1  # still moving: wa's lease is there
    assert leases.renew(redis_client, [5], A, 30) == [5]  # wa's next renewal finds it lost: its client stops
    assert leases.acquire(redis_client, 5, A, 30) == (False, "wb/")  # and it cannot take it again
    assert leases.release(redis_client, 5, A)
    assert leases.acquire(redis_client, 5, B, 30) == (True, B)
    assert leases.sweep(redis_client) == 0
    assert redis_client.hgetall(keys.account_assignment(5)) == {"worker": "wb"}
    assert not redis_client.sismember(keys.ASSIGNMENTS_MOVING, 5)


def test_moving_back_and_forth_never_lets_two_hold_it(redis_client: Redis) -> None:
    _known(redis_client, "wa", "wb", "wc")
    leases.assign(redis_client, 5, "wa")
    assert leases.acquire(redis_client, 5, A, 30)[0]
    leases.assign(redis_client, 5, "wb")
    leases.assign(redis_client, 5, "wc")
    assert leases.acquire(redis_client, 5, "wc/inst-c", 30) == (False, A)
    leases.assign(redis_client, 5, "wa")  # back where it runs: it keeps it
    assert leases.renew(redis_client, [5], A, 30) == []


def test_an_account_running_from_before_assignments_is_not_taken_by_another(redis_client: Redis) -> None:
    _known(redis_client, "wa", "wb")
    assert leases.acquire(redis_client, 7, A, 30)[0]  # no assignment (an upgrade, or Redis lost it)
    assert leases.acquire(redis_client, 7, B, 30) == (False, A)
    leases.assign(redis_client, 7, "wb")  # the control plane moves it: wa had no assignment to remember
    assert redis_client.hget(keys.account_assignment(7), "was:wa") == "1"  # the lease it found, remembered
    assert leases.acquire(redis_client, 7, B, 30) == (False, A)  # so wb waits for wa to let go
    assert leases.release(redis_client, 7, A) and leases.acquire(redis_client, 7, B, 30) == (True, B)


def test_concurrent_acquires_of_a_free_account_grant_it_once(redis_client: Redis) -> None:
    names = [f"w{index}" for index in range(8)]
    _known(redis_client, *names)
    granted: list[str] = []
    barrier = threading.Barrier(len(names))

    def take(name: str) -> None:
        barrier.wait()
        if leases.acquire(redis_client, 9, f"{name}/inst", 30)[0]:
            granted.append(name)

    threads = [threading.Thread(target=take, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 1


def test_the_dispatcher_gives_the_accounts_it_starts_to_the_worker_it_sends_them_to(
    redis_url: str, redis_client: Redis
) -> None:
    dispatcher = TaskDispatcher(redis_url)
    spec = AccountSpec(account_id=11, phone_enc=TOKEN, api_id=1, api_hash_enc=TOKEN, session_enc=TOKEN)
    other = AccountSpec(account_id=12, phone_enc=TOKEN, api_id=1, api_hash_enc=TOKEN, session_enc=TOKEN)
    dispatcher.send("wa", TaskName.START_ACCOUNT, StartAccount(spec=spec), ignore_result=True)
    dispatcher.send_many([("wb", TaskName.START_ACCOUNTS, StartAccounts(specs=[spec, other]))])
    dispatcher.send("wa", TaskName.STOP_ACCOUNT, AccountRef(account_id=12), ignore_result=True)  # a stop gives nothing
    assert leases.assigned_workers(redis_client, [11, 12, 13]) == {11: "wb", 12: "wb"}
    assert redis_client.hget(keys.account_assignment(11), "was:wa") == "1"
    assert redis_client.llen(queue_for("wa")) == 2 and redis_client.llen(queue_for("wb")) == 1


def test_a_name_another_worker_writes_into_the_heartbeat_index_says_nothing(redis_client: Redis) -> None:
    _known(redis_client, "wa")
    real = presence.read_heartbeats(redis_client, ["wa"]).beats["wa"]
    now = presence.server_time(redis_client)
    # The index is shared: another worker's login can write it, but not wa's own keys.
    redis_client.zadd(keys.HEARTBEATS, {"wa": now + 100, "ghost": now + 100})
    snapshot = presence.read_all_heartbeats(redis_client)
    assert snapshot.beats == {"wa": real}  # wa at its own last heartbeat; a name that never registered: nobody
    assert presence.read_heartbeats(redis_client, ["wa", "ghost"]).beats == {"wa": real}
