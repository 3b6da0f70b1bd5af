"""The backup archive's codec (`backend.backup_format`): every kind of column value survives the trip, and an
archive cut between two of its parts, or with parts swapped, is refused (the end-to-end refusals are in
`tests/test_backup.py`)."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC
from pathlib import Path

import pytest

PASSPHRASE = "correct horse battery staple"


def test_values_of_every_kind_travel_tagged() -> None:
    import datetime as dt
    import decimal

    from backend.backup_format import decode_value, encode_value

    values = [
        None,
        True,
        7,
        "текст",
        1.5,
        float("inf"),
        dt.datetime(2026, 1, 2, 3, 4, 5, 6),
        dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        dt.date(2026, 1, 2),
        dt.time(3, 4, 5),
        dt.timedelta(days=1, seconds=2, microseconds=3),
        decimal.Decimal("1.10"),
        b"\x00\xffbytes",
        uuid.UUID(int=5),
        {"$datetime": "a JSON column's document that looks like a tag"},
        [1, {"a": None}],
    ]
    travelled = [decode_value(value) for value in json.loads(json.dumps([encode_value(v) for v in values]))]
    assert travelled == values


def _frame_ends(raw: bytes) -> list[int]:
    from backend.backup_format import MAGIC

    position = len(MAGIC) + 4 + int.from_bytes(raw[len(MAGIC) : len(MAGIC) + 4], "big")
    ends = []
    while position < len(raw):
        position += 4 + int.from_bytes(raw[position : position + 4], "big")
        ends.append(position)
    return ends


def test_an_archive_cut_between_its_parts_or_with_parts_reordered_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend import backup_format
    from backend.backup_format import ArchiveError, Passphrase, read_archive, write_archive

    monkeypatch.setattr(backup_format, "CHUNK", 256)
    records = [{"n": i, "noise": os.urandom(64).hex()} for i in range(40)]
    path = tmp_path / "many-parts.backup"
    with write_archive(path, Passphrase(PASSPHRASE)) as writer:
        for record in records:
            writer.write(record)
    assert list(read_archive(path, Passphrase(PASSPHRASE))) == records
    raw = path.read_bytes()
    ends = _frame_ends(raw)
    assert len(ends) > 5 and ends[-1] == len(raw)

    path.write_bytes(raw[: ends[2]])  # whole parts, the last one missing
    with pytest.raises(ArchiveError, match="truncated"):
        list(read_archive(path, Passphrase(PASSPHRASE)))
    start = ends[0]
    second, third = raw[start : ends[1]], raw[ends[1] : ends[2]]
    path.write_bytes(raw[:start] + third + second + raw[ends[2] :])  # two parts swapped
    with pytest.raises(ArchiveError, match="damaged"):
        list(read_archive(path, Passphrase(PASSPHRASE)))
