"""A session that is already an account of the fleet is refused at import, naming that account: two places at
once is how Telegram revokes a key (AUTH_KEY_DUPLICATED). The database's unique index holds it, so imports at
the same moment cannot both get in; accounts stored before the check get their session's hash lazily."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select, text

from backend.control_plane import ControlPlane
from backend.errors import AccountError
from common.errors import FleetError
from database import session_keys
from database.models import Account
from tests.support.fake_telegram import session_for
from tests.support.stack import TEST_SECRET_KEY

API_HASH = "0123456789abcdef0123456789abcdef"
SESSION = session_for("+15550009999")


@pytest.fixture
def plane(database_url: str, redis_url: str) -> Iterator[ControlPlane]:
    running = ControlPlane(redis_url, database_url, 2.0, secret_key=lambda: TEST_SECRET_KEY)
    running.fleet.add_worker("w1", "10.0.0.1", "test")
    yield running
    running.close()


def fresh(plane: ControlPlane) -> ControlPlane:
    """Another process's services over the same database."""
    return ControlPlane(plane.redis_url, plane.database_url, 2.0, secret_key=lambda: TEST_SECRET_KEY)


def import_as(plane: ControlPlane, phone: str, session: str = SESSION) -> int:
    view = plane.accounts.import_session("w1", 12345, API_HASH, session_string=session, phone=phone, actor="t")
    return view.id


def test_the_same_session_is_refused_naming_the_account_that_has_it(plane: ControlPlane) -> None:
    first = import_as(plane, "+15550001111")
    with pytest.raises(AccountError) as refused:
        import_as(plane, "+15550002222")
    error = refused.value
    assert error.code == "session_in_fleet" and error.values == {"id": first, "phone": "+1 *** ***-11-11"}
    assert f"account {first} (+1 *** ***-11-11)" in str(error) and "AUTH_KEY_DUPLICATED" in str(error)
    # The same session as a .session file (or written differently) is the same auth key.
    from common.sessions import parse_string_session

    data = parse_string_session(SESSION)
    moved = type(data)(data.dc_id + 1, "127.0.0.2", 443, data.auth_key).to_string()
    with pytest.raises(AccountError, match="of the fleet already"):
        import_as(plane, "+15550003333", moved)
    assert import_as(plane, "+15550004444", session_for("+15550004444")) > first  # another session: welcome
    with plane.sessions() as session:
        assert session.scalar(select(func.count(Account.id))) == 2


def test_the_unique_index_refuses_what_the_check_before_it_missed(
    plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As when two imports pass the check at the same moment: the database refuses the second, and the error
    still names the account that got the session."""
    first = import_as(plane, "+15550001111")
    real, calls = session_keys.find_by_session, []

    def blind_once(session: Any, lookups: list[str]) -> Any:  # the check before the write sees nothing
        calls.append(lookups)
        return None if len(calls) == 1 else real(session, lookups)

    monkeypatch.setattr(session_keys, "find_by_session", blind_once)
    with pytest.raises(AccountError) as refused:
        import_as(plane, "+15550002222")
    assert refused.value.code == "session_in_fleet" and refused.value.values["id"] == first
    assert len(calls) == 2  # the check, then the refusal's naming of the holder


def test_parallel_imports_of_one_session_make_exactly_one_account(plane: ControlPlane) -> None:
    start = threading.Barrier(8)
    outcomes: dict[int, object] = {}

    def one(n: int) -> None:
        start.wait()
        try:
            outcomes[n] = import_as(plane, f"+1555000{n:04d}")
        except FleetError as error:
            outcomes[n] = error

    threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    winners = [value for value in outcomes.values() if isinstance(value, int)]
    refusals = [value for value in outcomes.values() if isinstance(value, FleetError)]
    assert len(winners) == 1 and len(refusals) == 7
    assert all(r.code == "session_in_fleet" and r.values["id"] == winners[0] for r in refusals), refusals
    with plane.sessions() as session:
        assert session.scalar(select(func.count(Account.id))) == 1


def test_accounts_stored_before_the_check_get_their_hash_before_the_next_import(plane: ControlPlane) -> None:
    first = import_as(plane, "+15550001111")
    twin = import_as(plane, "+15550002222", session_for("+15550002222"))
    with plane.sessions.begin() as session:  # as migration 0010 leaves them, and a pair stored twice before it
        session.execute(text("UPDATE accounts SET session_lookup = NULL"))
        token = session.scalar(select(Account.session_enc).where(Account.id == first))
        session.execute(text("UPDATE accounts SET session_enc = :t WHERE id = :id"), {"t": token, "id": twin})
    later = fresh(plane)
    try:
        with pytest.raises(AccountError) as refused:
            import_as(later, "+15550003333")
        assert refused.value.values["id"] == first
        with later.sessions() as session:
            lookups = dict(session.execute(select(Account.id, Account.session_lookup)).all())
        assert lookups[first] == session_keys.session_lookup(later.accounts.box, SESSION) and lookups[twin] is None
    finally:
        later.close()
