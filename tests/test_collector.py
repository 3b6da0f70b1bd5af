"""The worker's garbage-collector policy (`worker.collector`): what survives a full collection is frozen, so later
ones walk only what is new; everything is thawed once enough client runs have ended to have left garbage."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from worker.collector import THAW_AFTER_RUNS, Collector


@pytest.fixture
def collector() -> Iterator[Collector]:
    installed = Collector()
    installed.install()
    installed.install()  # idempotent
    yield installed
    gc.callbacks.remove(installed._on_collection)
    gc.unfreeze()


def test_a_full_collection_freezes_what_survived_it(collector: Collector) -> None:
    assert gc.callbacks.count(collector._on_collection) == 1
    gc.unfreeze()
    gc.collect(1)  # a young collection freezes nothing
    assert gc.get_freeze_count() == 0
    gc.collect()
    frozen = gc.get_freeze_count()
    assert frozen > 0 and collector.full_collections == 1
    survivor = [object()]  # made since: walked by the next full collection, then frozen with the rest
    gc.collect()
    assert gc.get_freeze_count() > frozen and survivor


def test_everything_is_thawed_once_as_many_runs_ended_as_there_are_clients(collector: Collector) -> None:
    gc.collect()
    assert gc.get_freeze_count() > 0
    running = THAW_AFTER_RUNS * 2
    for _ in range(running - 1):
        collector.run_ended(running)
    assert gc.get_freeze_count() > 0
    collector.run_ended(running)
    assert gc.get_freeze_count() == 0  # the next full collection frees what the ended runs left in cycles
    gc.collect()
    for _ in range(THAW_AFTER_RUNS - 1):  # few clients: at least THAW_AFTER_RUNS runs between thaws
        collector.run_ended(3)
    assert gc.get_freeze_count() > 0
