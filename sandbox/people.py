"""The sandbox's people: a handful of contacts that are accounts of the sandbox's Telegram, not of the fleet.

- `tester` ("Вы") is you: `sandbox send` writes as it unless told `--as NAME`; it never writes or answers by
  itself, so what you send is the only thing in its chats.
- The scripted contacts (alice, boris, olga) write to a fleet account now and then (`chatter_every` seconds;
  0: never) and answer when an account writes to them: one line, a second or two later, at most once a minute
  per account, so that two automatons (a contact and an autoreply) never talk to each other in a loop.

Everything arrives as it does on Telegram: the message is stored in both chats and pushed to the recipient's
live connections (`MTProtoServer.deliver`), where a running client and its plugins see it at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass

from sandbox.mtproto import MTProtoServer
from sandbox.mtproto.store import normalize_phone

log = logging.getLogger(__name__)

ANSWER_COOLDOWN = 60.0  # seconds: a contact answers one account at most this often
ANSWER_DELAY = (1.0, 2.5)  # seconds before an answer arrives


@dataclass(frozen=True)
class Person:
    name: str  # the username, and the name `sandbox send --as` takes
    first_name: str
    phone: str
    says: tuple[str, ...] = ()  # what it writes first, now and then
    answers: tuple[str, ...] = ()  # what it answers; empty: it never answers (you)

    @property
    def scripted(self) -> bool:
        return bool(self.says or self.answers)


TESTER = Person("tester", "Вы", "+99966100000")
PEOPLE: tuple[Person, ...] = (
    TESTER,
    Person(
        "alice",
        "Alice",
        "+99966100001",
        says=("Hi! Are you around today?", "Could you send me the invoice for March?", "Thanks for yesterday!"),
        answers=("Great, thanks!", "OK, talk later.", "👍"),
    ),
    Person(
        "boris",
        "Борис",
        "+99966100002",
        says=("Привет! Как дела?", "Когда будет готов заказ №42?", "Созвонимся завтра?"),
        answers=("Понял, спасибо!", "Хорошо, договорились.", "Ок 👌"),
    ),
    Person(
        "olga",
        "Ольга",
        "+99966100003",
        says=("Добрый день! Вы сегодня работаете?", "Пришлите, пожалуйста, счёт (invoice) за услуги.", "Спасибо!"),
        answers=("Спасибо за ответ!", "Жду, спасибо.", "Хорошего дня!"),
    ),
)


def person(name: str) -> Person | None:
    wanted = name.lstrip("@").lower()
    return next((p for p in PEOPLE if p.name == wanted), None)


class People:
    """Adds the people to the server and, in a thread of its own, has the scripted ones write and answer."""

    def __init__(self, server: MTProtoServer, chatter_every: float, seed: int | None = None) -> None:
        self.server = server
        self.chatter_every = chatter_every
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._seen: dict[str, int] = {}  # person -> the last message id of theirs looked at
        self._answered: dict[tuple[str, int], float] = {}  # (person, account user id) -> when last answered
        self._due: list[tuple[float, Person, int]] = []  # answers to deliver: (when, who, to which user id)
        self.written = 0  # messages the people wrote or answered so far
        self._thread = threading.Thread(target=self._run, name="sandbox-people", daemon=True)

    def start(self, *, run: bool = True) -> People:
        """Add the people to the server; with `run`, start their thread (a test drives them step by step)."""
        for who in PEOPLE:
            self.server.add_account(who.phone, first_name=who.first_name, username=who.name)
        if run:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        next_chatter = time.monotonic() + self.chatter_every
        while not self._stop.wait(0.25):
            try:
                self.answer_new()
                self.deliver_due()
                if self.chatter_every > 0 and time.monotonic() >= next_chatter:
                    next_chatter = time.monotonic() + self.chatter_every
                    self.chatter()
            except Exception:
                log.exception("the sandbox's people failed a round")

    def answer_new(self) -> None:
        """Each message a fleet account wrote to a scripted person since the last look gets an answer queued."""
        moment = time.monotonic()
        for who in PEOPLE:
            if not who.answers:
                continue
            with self.server.store.lock:
                messages = list(self.server.store.accounts[normalize_phone(who.phone)].messages)
            seen = self._seen.get(who.name, 0)
            readers: set[int] = set()
            for message in messages:
                if message.id <= seen or message.out:
                    continue
                readers.add(message.peer_id)
                key = (who.name, message.peer_id)
                if moment - self._answered.get(key, -ANSWER_COOLDOWN) >= ANSWER_COOLDOWN:
                    self._answered[key] = moment
                    self._due.append((moment + self._random.uniform(*ANSWER_DELAY), who, message.peer_id))
            if messages:
                self._seen[who.name] = messages[-1].id
            for user_id in readers:  # they read what they were sent: the writer's client sees it read (✓✓)
                phone = self._phone_of(user_id)
                if phone is not None:
                    self.server.read(who.phone, "+" + phone)

    def deliver_due(self) -> None:
        moment = time.monotonic()
        due = [entry for entry in self._due if entry[0] <= moment]
        self._due = [entry for entry in self._due if entry[0] > moment]
        for _when, who, user_id in due:
            phone = self._phone_of(user_id)
            if phone is not None:
                self.server.deliver(phone, self._random.choice(who.answers), sender=who.phone)
                self.written += 1

    def chatter(self) -> None:
        """A scripted person writes to a fleet account that is connected now (a message nobody sees is no demo)."""
        with self.server.store.lock:
            people = {normalize_phone(p.phone) for p in PEOPLE}
            accounts = [phone for phone in self.server.store.accounts if phone not in people]
        online = [phone for phone in accounts if self.server.live_connections(phone) > 0]
        if not online:
            return
        who = self._random.choice([p for p in PEOPLE if p.says])
        self.server.deliver(self._random.choice(online), self._random.choice(who.says), sender=who.phone)
        self.written += 1

    def _phone_of(self, user_id: int) -> str | None:
        with self.server.store.lock:
            account = self.server.store.account_by_id(user_id)
            return account.phone if account is not None else None
