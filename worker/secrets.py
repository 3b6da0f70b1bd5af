"""What a worker can open: the secrets the control plane sealed to this worker's own key (`common.sealing`), and
— only if it was given SECRET_KEY, for a control plane that does not seal yet — SECRET_KEY's tokens.

A value sealed to another worker's key, or as another field, does not open here. What the worker sends back (a
new session after a login) is sealed to the control plane's public key, read from Redis where the control plane
publishes it; without it (an older control plane) the worker needs SECRET_KEY to answer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from common.crypto import SecretBox, SecretError
from common.sealing import KeyPair, SealError, is_sealed, open_sealed, replace_key_file, seal


class WorkerSecrets:
    def __init__(self, identity: KeyPair, box: SecretBox | None, control_key: Callable[[], str | None]) -> None:
        self.identity = identity
        self.previous: list[KeyPair] = []  # keys rotated away in this run: what was sealed to them still opens
        self.box = box
        self.control_key = control_key

    def rotate(self, path: Path) -> KeyPair:
        """A new key pair, written over the key file; the old one kept in memory (messages sealed to it before the
        control plane pinned the new one still open until this process ends)."""
        pair = KeyPair.generate()
        replace_key_file(path, pair)
        self.previous.insert(0, self.identity)
        self.identity = pair
        return pair

    @classmethod
    def with_secret_key(cls, box: SecretBox) -> WorkerSecrets:
        """A worker that reads SECRET_KEY's tokens (and values sealed to a key of its own made now)."""
        return cls(KeyPair.generate(), box, lambda: None)

    def decrypt(self, value: str, field: str) -> str:
        """The clear value of `field`; SecretError (one line, no secret) when it cannot be opened here."""
        if is_sealed(value):
            for pair in (self.identity, *self.previous):
                try:
                    return open_sealed(pair, value, field)
                except SealError as error:
                    failure = error
            raise SecretError(f"{field} does not open with this worker's key ({failure})") from None
        if self.box is None:
            raise SecretError(
                f"{field} is not sealed to this worker and it has no SECRET_KEY: the control plane seals secrets "
                "only to a worker whose key it has pinned (run_cli.py show NAME)"
            )
        return self.box.decrypt(value)

    def opener(self, field: str) -> Callable[[str], str]:
        return lambda value: self.decrypt(value, field)

    def encrypt(self, value: str, field: str) -> str:
        """`value` for the control plane: sealed to its public key (or SECRET_KEY's token without one)."""
        key = self.control_key()
        if key:
            return seal(key, value, field)
        if self.box is None:
            raise SecretError("the control plane has published no key to seal to, and this worker has no SECRET_KEY")
        return self.box.encrypt(value)

    def lookup(self, phone: str) -> str:
        """SECRET_KEY's keyed hash of a phone number (a device identity for a spec from before identities)."""
        if self.box is None:
            raise SecretError("a spec without a device identity (from an older control plane) needs SECRET_KEY here")
        return self.box.lookup(phone)
