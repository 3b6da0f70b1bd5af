"""A restart of the real `run_board.py` in the middle of a burst at Telegram's limits (the stand-in enforces
them): with SIGTERM nothing is lost and nothing is sent twice, and every sender's messages reach the partner in
the order they were sent; with `kill -9` nothing is sent twice either, and a message that was in flight when
the process died is reported to its sender as possibly undelivered."""

from __future__ import annotations

import json
import signal
from collections import Counter

import pytest

from board.texts import t
from tests.support.board_harness import Person
from tests.support.board_process import WAIT, Board
from tests.support.stack import wait_until

pytestmark = pytest.mark.processes
CHATS = 20
PER_SIDE = 3
BASE = 7_400_000_000


def open_chats(board: Board) -> list[tuple[Person, Person]]:
    """`CHATS` chats, made through the service (as the Mini App and the bot would), their notices sent."""
    people = []
    for index in range(CHATS):
        author, guest = board.person(BASE + 2 * index), board.person(BASE + 2 * index + 1)
        author_ref, guest_ref = board.service.user(author.id, "ru"), board.service.user(guest.id, "ru")
        ad = board.service.create_ad(author_ref, f"Вещь {index}", f"Отдам вещь номер {index}, самовывоз", "other")
        invite = board.service.send_invite(guest_ref, ad.id, f"Здравствуйте, вещь {index} ещё есть?")
        board.service.decide_invite(author_ref, invite.invite_id, True)
        people.append((author, guest))
    wait_until(lambda: board.service.outbox_backlog() == 0, WAIT * 2, message="the chats' notices are sent")
    return people


def push_burst(people: list[tuple[Person, Person]]) -> dict[tuple[int, int], list[int]]:
    """Every side of every chat sends PER_SIDE messages at once: (sender, recipient) -> message ids, in order."""
    sent: dict[tuple[int, int], list[int]] = {}
    for round_ in range(PER_SIDE):
        for author, guest in people:
            for sender, recipient in ((guest, author), (author, guest)):
                message = sender.say(f"{round_}: к {recipient.id}")
                sent.setdefault((sender.id, recipient.id), []).append(message["message_id"])
    return sent


def copies(board: Board, after: int) -> list[tuple[int, int, int]]:
    """(sender, recipient, message id) of every copy Telegram took, in the order it took them."""
    return [
        (int(call.params["from_chat_id"]), int(call.params["chat_id"]), int(call.params["message_id"]))
        for call in board.core.calls[after:]
        if call.ok and call.method == "copyMessage"
    ]


def restart_mid_burst(board: Board, how: signal.Signals) -> tuple[dict[tuple[int, int], list[int]], int, int]:
    board.start()
    people = open_chats(board)
    mark = len(board.core.calls)
    sent = push_burst(people)
    total = sum(len(ids) for ids in sent.values())
    wait_until(lambda: len(copies(board, mark)) >= total // 3, WAIT, message="a third of the burst delivered")
    process = board.processes[-1]
    process.send_signal(how)
    process.wait(WAIT)
    stopped_at = len(copies(board, mark))
    assert 0 < stopped_at < total, "the restart came in the middle of the burst"
    board.start()
    return sent, mark, total


def test_a_clean_restart_mid_burst_loses_and_repeats_nothing(board: Board) -> None:
    sent, mark, total = restart_mid_burst(board, signal.SIGTERM)
    assert board.processes[0].returncode == 0
    wait_until(lambda: len(copies(board, mark)) >= total, WAIT * 3, message="the whole burst delivered")
    wait_until(lambda: board.service.outbox_backlog() == 0, WAIT, message="nothing left queued")
    delivered = copies(board, mark)
    assert not [key for key, n in Counter(delivered).items() if n > 1], "a message was sent twice"
    assert len(delivered) == total
    for (sender, recipient), ids in sent.items():
        assert [m for s, r, m in delivered if (s, r) == (sender, recipient)] == ids  # in the order sent
    assert "Traceback" not in board.logs()


def test_a_kill_mid_burst_repeats_nothing_and_says_what_may_be_lost(board: Board) -> None:
    sent, mark, total = restart_mid_burst(board, signal.SIGKILL)
    uncertain_text = t("ru", "relay.uncertain")

    def settled() -> bool:
        if board.service.outbox_backlog():
            return False
        told = {json.loads(c.params["reply_parameters"])["message_id"] for c in board.core.calls[mark:]
                if c.ok and c.params.get("text") == uncertain_text}  # fmt: skip
        return len({m for _, _, m in copies(board, mark)} | told) >= total

    wait_until(settled, WAIT * 3, message="every message delivered or its sender told it may not have been")
    delivered = copies(board, mark)
    assert not [key for key, n in Counter(delivered).items() if n > 1], "a message was sent twice"
    told = [c for c in board.core.calls[mark:] if c.ok and c.params.get("text") == uncertain_text]
    assert len(told) <= 64  # at most what was in flight at the kill
    lost_and_told = {json.loads(c.params["reply_parameters"])["message_id"] for c in told}
    for (sender, recipient), ids in sent.items():
        arrived = [m for s, r, m in delivered if (s, r) == (sender, recipient)]
        assert arrived == [m for m in ids if m in arrived]  # order kept
        assert set(ids) <= set(arrived) | lost_and_told  # nothing lost silently
