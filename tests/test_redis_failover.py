"""The fleet through a Redis failover: `kill -9` of the primary under two workers, a backend and 200 accounts.

Real processes (`tests/support/failover`): a primary, a replica and three sentinels on free ports; two
`run_worker.py` and one `run_backend.py` reaching Redis through the sentinels; 200 accounts on the fake
Telegram, all desired running. The primary is killed with nothing in flight, with moves in flight (a batch
of accounts moving from w1 to w2 through the accounts service), and with timings under which the workers
fence themselves while Redis is away. Each time:
- every account desired running runs again (Telegram sees it connected and `accounts list` shows it running),
  and the database records it running (the events lost with the old primary are repaired by the scan);
- no account ever ran twice (the fake Telegram's violation list stays empty);
- `accounts list`, sampled every 0.2 s throughout, never showed `running` for an account with no live client.
Bounds are generous (a busy 2-core machine); `bench/failover.py` measures the recovery time against its bar.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.embedded_redis import EmbeddedRedis
from scripts.embedded_sentinel import EmbeddedSentinel
from tests.support.chaos import ChaosFleet, Sampler
from tests.support.failover import Moves, kill_primary, start_fleet
from tests.support.stack import Stack, wait_until

pytestmark = [pytest.mark.processes, pytest.mark.timeout(900)]  # 200 accounts and seven processes, on 2 cores
RECOVERY_TIMEOUT = 180.0
PER_WORKER = 100
MOVED = 20

# The workers outlast the failover without fencing: half of WORKER_OFFLINE_AFTER is well past Sentinel's
# detection (1 s) and promotion. Or they fence (half of 3 s), park their clients and resume them afterwards.
PATIENT = {"HEARTBEAT_INTERVAL": "0.5", "WORKER_OFFLINE_AFTER": "16"}
FENCING = {"HEARTBEAT_INTERVAL": "0.3", "WORKER_OFFLINE_AFTER": "3"}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmbeddedSentinel]:
    with EmbeddedSentinel(replicas=1, workdir=str(tmp_path / "sentinel")) as running:
        yield running


@pytest.fixture
def telegram_server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """Telegram's own state (the fake's connection table), apart from the fleet's Redis."""
    (tmp_path / "telegram-redis").mkdir()
    with EmbeddedRedis(workdir=str(tmp_path / "telegram-redis")) as server:
        yield server


@pytest.fixture
def fleet(
    request: pytest.FixtureRequest, stack: Stack, cluster: EmbeddedSentinel, telegram_server: EmbeddedRedis
) -> Iterator[ChaosFleet]:
    stack.env.update(WORKER_CONNECTS_PER_SECOND="1000", **request.param)
    running = start_fleet(stack, cluster, telegram_server.url, per_worker=PER_WORKER, scan_interval=1.0)
    yield running
    stack.shutdown()
    running.close()


@pytest.fixture
def sampler(fleet: ChaosFleet) -> Iterator[Sampler]:
    watching = Sampler(fleet).start()
    wait_until(lambda: watching.samples >= 2, 60, message="the sampler watching before the failover")
    yield watching
    watching.stop()


def w1_accounts(fleet: ChaosFleet) -> list[int]:
    return sorted(i for p, i in fleet.ids_by_phone.items() if p.startswith("+1555000"))


def recovered(fleet: ChaosFleet, sampler: Sampler) -> None:
    try:
        fleet.wait_all_running(RECOVERY_TIMEOUT, "every account running and shown running after the failover")
    except AssertionError as error:
        live, shown = fleet.live(), fleet.shown_running()
        raise AssertionError(
            f"{error}; not connected: {sorted(fleet.all_ids - live)}; not shown running: "
            f"{sorted(fleet.all_ids - shown)}; processes exited: "
            f"{[p.args for p in [fleet.backend, *fleet.processes.values()] if p.poll() is not None]}"
        ) from None
    wait_until(
        lambda: fleet.recorded_running() == fleet.all_ids,
        RECOVERY_TIMEOUT,
        interval=0.2,
        message="the database records every account running",
    )
    seen = sampler.samples  # and a few more samples once whole again: the CLI's view settles on live sources
    wait_until(lambda: sampler.samples >= seen + 3, 60, message="three more samples after the recovery")
    assert all(process.poll() is None for process in [fleet.backend, *fleet.processes.values()])
    assert fleet.violations() == [], "an account ran on two workers at once"
    assert sampler.violations == [], sampler.violations[:5]


@pytest.mark.parametrize("fleet", [PATIENT], indirect=True, ids=["patient"])
def test_the_primary_killed_with_nothing_in_flight(
    fleet: ChaosFleet, sampler: Sampler, cluster: EmbeddedSentinel
) -> None:
    kill_primary(cluster)
    recovered(fleet, sampler)


@pytest.mark.parametrize("fleet", [PATIENT, FENCING], indirect=True, ids=["patient", "fencing"])
def test_the_primary_killed_with_moves_in_flight(
    fleet: ChaosFleet, sampler: Sampler, cluster: EmbeddedSentinel
) -> None:
    moving = w1_accounts(fleet)[:MOVED]
    moves = Moves(fleet, moving, "w2").start()
    moves.wait_done(2)  # a few moved; the primary dies under the others
    in_flight = MOVED - len(moves.done) - len(moves.failed)
    kill_primary(cluster)
    assert in_flight > 0
    moves.join()
    recovered(fleet, sampler)
    # Whatever each move got done before the failover broke it, every account runs where it is assigned now.
    on_w2 = {view.id for view in fleet.service.list_accounts() if view.worker == "w2"}
    assert set(moves.done) <= on_w2
