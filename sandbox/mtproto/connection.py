"""One client connection: the transport, the key exchange, then MTProto 2.0 encrypted messages.

Incoming (core.telegram.org/mtproto/description, /service_messages): the auth key must be known (else the
transport error -404), msg_key must match (else the connection is closed), msg_id must be a multiple of 4
(bad_msg_notification 18) within -300..+30 s of our clock (16 / 17), seq_no odd for content-related messages
and even for the rest (34 / 35), the salt the current one (else bad_server_salt with the right one and the
message is not processed). The first message of a session id gets new_session_created. Containers and
gzip_packed are opened; msgs_ack needs nothing; ping gets pong; every other request an rpc_result.

Outgoing: msg_id from our clock, = 1 mod 4 for answers and 3 otherwise, increasing per session; seq_no odd
for content-related messages; several messages for one packet go in a msg_container. Updates for the connection
(`outbox`, queued by other connections' requests or the server's control methods) go out ahead of anything else
it sends next, in the order queued, so the client sees pts without gaps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import time
from typing import TYPE_CHECKING, Protocol

from telethon.errors import TypeNotFoundError
from telethon.extensions import BinaryReader
from telethon.tl import functions, types
from telethon.tl.core import GzipPacked, MessageContainer
from telethon.tl.tlobject import TLRequest

from . import api
from .crypto import CryptoError, decrypt_from_client, encrypt_to_client
from .handshake import Handshake, HandshakeError, read_plain, write_plain
from .rpc import Outbox
from .store import AuthKeyRecord, ServerSession, Store
from .transport import Transport, TransportError

if TYPE_CHECKING:
    from .crypto import ServerKey


class Listening(Protocol):
    """What a connection needs of the server that accepted it (`MTProtoServer`)."""

    store: Store
    key: ServerKey
    dc_id: int
    host: str
    port: int
    mtproxy_secret: bytes | None


log = logging.getLogger(__name__)

RPC_RESULT = 0xF35C6D01
MSG_CONTAINER = 0x73F1F8DC
MSG_TOO_OLD, MSG_TOO_NEW = 300, 30
GZIP_OVER = 512


def server_msg_id(session: ServerSession, *, response: bool) -> int:
    now = time.time()
    msg_id = (int(now) << 32) | (int((now % 1) * 2**32) & ~3)
    msg_id = max(msg_id, (session.last_msg_id & ~3) + 4) | (1 if response else 3)
    session.last_msg_id = msg_id
    return msg_id


def server_seq_no(session: ServerSession, *, content_related: bool) -> int:
    if not content_related:
        return session.sequence * 2
    session.sequence += 1
    return session.sequence * 2 - 1


class _Outgoing:
    """The messages one incoming packet produced, to send back together."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, bool, bool]] = []  # (body, content_related, is_response)

    def add(self, body: bytes, *, content_related: bool = True, response: bool = True) -> None:
        self.messages.append((body, content_related, response))


class Connection:
    def __init__(self, server: Listening, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.store = server.store
        self.reader, self.writer = reader, writer
        self.transport: Transport | None = None
        self.handshake = Handshake(server.key, server.dc_id)
        self.record: AuthKeyRecord | None = None
        self.indexed_user: int | None = None  # the user the store indexes this live connection under
        self.session: ServerSession | None = None  # the MTProto session of its latest message (pushes go there)
        self.duplicate = False
        self.wants_updates = False  # after a request not wrapped in invokeWithoutUpdates, as on Telegram
        self.closed = False
        self.outbox: list[bytes] = []  # updates to push, in pts order (added and taken with the lock held)
        self._changes: list[Outbox] = []  # of this packet's requests: what they push to other connections
        self._plain_ids = ServerSession(0)  # msg_id counter of the unencrypted answers
        self._disconnect_timer: asyncio.TimerHandle | None = None

    # --- life -------------------------------------------------------------------------------------------------

    async def serve(self) -> None:
        try:
            self.transport = await Transport.accept(self.reader, self.writer, self.server.mtproxy_secret)
            while not self.closed:
                packet = await self.transport.read_packet()
                with self.store.lock:
                    stalled = self.store.stalled
                if stalled:
                    continue  # accepted, read, never answered
                if len(packet) < 8:
                    continue
                if packet[:8] == bytes(8):
                    await self._plain(packet)
                else:
                    await self._encrypted(packet)
        except (asyncio.IncompleteReadError, ConnectionError, TransportError, HandshakeError, CryptoError) as error:
            log.debug("connection closed: %s: %s", type(error).__name__, error)
        except Exception:  # a bug of this server: say so, close this connection, keep serving
            log.exception("MTProto test server: unexpected error; closing the connection")
        finally:
            self.close()

    def close(self) -> None:
        """Close the TCP connection; from then on it no longer counts as live (synchronously)."""
        if self._disconnect_timer is not None:
            self._disconnect_timer.cancel()
        with self.store.lock:
            self.closed = True
            self.store.detach(self)
        with contextlib.suppress(Exception):
            self.writer.close()

    # --- unencrypted: the key exchange -----------------------------------------------------------------------

    async def _plain(self, packet: bytes) -> None:
        assert self.transport is not None
        _msg_id, request = read_plain(packet)
        answer = self.handshake.answer(request)
        if self.handshake.auth_key is not None:
            key, self.handshake.auth_key = self.handshake.auth_key, None
            with self.store.lock:
                self.store.keys[key.key_id] = AuthKeyRecord(key, salt=self.handshake.server_salt)
        await self.transport.send(write_plain(server_msg_id(self._plain_ids, response=True), answer))

    # --- encrypted messages ----------------------------------------------------------------------------------

    async def _encrypted(self, packet: bytes) -> None:
        assert self.transport is not None
        key_id = struct.unpack("<Q", packet[:8])[0]
        with self.store.lock:
            record = self.store.keys.get(key_id)
        if record is None:
            await self.transport.send_error(404)
            self.close()
            return
        plaintext = decrypt_from_client(record.auth_key, packet)
        salt, session_id, msg_id, seq_no, length = struct.unpack("<qqqii", plaintext[:32])
        body = plaintext[32 : 32 + length]
        out = _Outgoing()
        with self.store.lock:
            self._attach(record)
            session = record.sessions.get(session_id) or record.sessions.setdefault(
                session_id, ServerSession(session_id)
            )
            self.session = session
            if self._check_msg_id(msg_id, seq_no, out) and self._check_salt(record, salt, msg_id, seq_no, out):
                if not session.announced:
                    session.announced = True
                    unique_id = int.from_bytes(os.urandom(8), "little", signed=True)
                    created = types.NewSessionCreated(first_msg_id=msg_id, unique_id=unique_id, server_salt=record.salt)
                    out.add(bytes(created), response=False)
                self._process(record, session, msg_id, seq_no, body, out, top_level=True)
            self.store.reindex(self)
        await self._send(record, session, out)
        changes, self._changes = self._changes, []
        for change in changes:
            await change.send()

    def _attach(self, record: AuthKeyRecord) -> None:
        """The first encrypted message makes this a live connection of its auth key (lock held)."""
        if self.record is record or self.closed:
            return
        self.record = record
        others = self.store.connections_of_key(record)
        if others and self.store.refuse_duplicates:
            self.duplicate = True
            self.store.duplicates.append(self.store.phone_of(record) or f"key:{record.auth_key.key_id}")
        self.store.attach(self)
        self.store.note_peak(self.store.phone_of(record))

    @staticmethod
    def _check_salt(record: AuthKeyRecord, salt: int, msg_id: int, seq_no: int, out: _Outgoing) -> bool:
        """A message with another salt is answered with the right one (and not processed)."""
        if salt != record.salt:
            out.add(bytes(types.BadServerSalt(msg_id, seq_no, 48, record.salt)), content_related=False)
        return salt == record.salt

    @staticmethod
    def _check_msg_id(msg_id: int, seq_no: int, out: _Outgoing) -> bool:
        """msg_id a multiple of 4, its time within -300..+30 s of ours; else bad_msg_notification 18/16/17."""
        code = 0
        if msg_id % 4:
            code = 18
        elif (msg_id >> 32) < time.time() - MSG_TOO_OLD:
            code = 16
        elif (msg_id >> 32) > time.time() + MSG_TOO_NEW:
            code = 17
        if code:
            out.add(bytes(types.BadMsgNotification(msg_id, seq_no, code)), content_related=False)
        return not code

    def _process(
        self,
        record: AuthKeyRecord,
        session: ServerSession,
        msg_id: int,
        seq_no: int,
        body: bytes | object,
        out: _Outgoing,
        *,
        top_level: bool = False,
    ) -> None:
        """One message (lock held): `body` as bytes, or already read (a container's inner messages)."""
        try:
            obj = _read(body)
        except TypeNotFoundError as error:
            log.debug("unknown constructor %08x", error.invalid_constructor_id)
            out.add(self._rpc_error(msg_id, 400, "INPUT_CONSTRUCTOR_INVALID"))
            return
        if msg_id in session.seen:
            return  # a resend of something we answered already
        session.seen.append(msg_id)
        content_related = isinstance(obj, TLRequest)
        if seq_no % 2 != content_related:
            out.add(bytes(types.BadMsgNotification(msg_id, seq_no, 34 if content_related else 35)), response=False)
            return
        if isinstance(obj, MessageContainer) and top_level:
            for inner in obj.messages:
                self._process(record, session, inner.msg_id, inner.seq_no, inner.obj, out)
        elif isinstance(obj, functions.PingRequest | functions.PingDelayDisconnectRequest):
            if self.store.record_calls:
                self.store.log_call(api.method_name(obj), self.store.phone_of(record), record.auth_key.key_id)
            out.add(bytes(types.Pong(msg_id=msg_id, ping_id=obj.ping_id)))
            if isinstance(obj, functions.PingDelayDisconnectRequest):
                self._schedule_disconnect(obj.disconnect_delay)
        elif isinstance(obj, functions.DestroySessionRequest):
            gone = record.sessions.pop(obj.session_id, None)
            answer = types.DestroySessionOk if gone else types.DestroySessionNone
            out.add(bytes(answer(obj.session_id)))
        elif isinstance(obj, TLRequest):
            out.add(self._rpc(record, msg_id, obj))
        # msgs_ack, msgs_state_info, ...: nothing to answer

    def _rpc(self, record: AuthKeyRecord, msg_id: int, request: TLRequest) -> bytes:
        server = self.server
        self.wants_updates = self.wants_updates or api.subscribes(request)
        ctx = api.Context(
            self.store, record, server.dc_id, server.host, server.port, duplicate=self.duplicate, connection=self
        )
        try:
            payload = api.serialize(api.dispatch(ctx, request))
        except api.RpcFault as fault:
            return self._rpc_error(msg_id, fault.code, fault.message)
        finally:
            if ctx.outbox.connections:
                self._changes.append(ctx.outbox)
        if len(payload) > GZIP_OVER:
            packed = bytes(GzipPacked(payload))
            payload = packed if len(packed) < len(payload) else payload
        return struct.pack("<Iq", RPC_RESULT, msg_id) + payload

    @staticmethod
    def _rpc_error(msg_id: int, code: int, message: str) -> bytes:
        return struct.pack("<Iq", RPC_RESULT, msg_id) + bytes(types.RpcError(code, message))

    def _schedule_disconnect(self, delay: int) -> None:
        if self._disconnect_timer is not None:
            self._disconnect_timer.cancel()
        self._disconnect_timer = asyncio.get_running_loop().call_later(delay, self.close)

    async def push(self, update: bytes) -> None:
        """Send an update the client did not ask for (a message arrived) in its latest session."""
        with self.store.lock:
            self.outbox.append(update)
        await self.flush()

    async def flush(self) -> None:
        """Send the updates queued for this connection (if not sent with something else meanwhile). Called by
        whoever queued them: a connection gone meanwhile is closed here, not in the caller's."""
        record, session = self.record, self.session
        if record is None or session is None:
            return
        try:
            await self._send(record, session, _Outgoing())
        except OSError as error:  # ConnectionResetError, BrokenPipeError, ...
            log.debug("push failed: %s: %s", type(error).__name__, error)
            self.close()

    async def _send(self, record: AuthKeyRecord, session: ServerSession, out: _Outgoing) -> None:
        """Send `out` after the queued updates, in one packet. Nothing awaits between taking the queue and
        writing the packet, so packets leave in the order their updates were queued."""
        assert self.transport is not None
        if self.closed:
            return
        with self.store.lock:
            updates, self.outbox = self.outbox, []
            out.messages[:0] = [(update, True, False) for update in updates]
            if not out.messages:
                return
            encoded = []
            for body, content_related, response in out.messages:
                inner_id = server_msg_id(session, response=response)
                seq_no = server_seq_no(session, content_related=content_related)
                encoded.append(struct.pack("<qii", inner_id, seq_no, len(body)) + body)
            if len(encoded) == 1:
                message = encoded[0]
            else:
                container = struct.pack("<Ii", MSG_CONTAINER, len(encoded)) + b"".join(encoded)
                container_id = server_msg_id(session, response=False)
                seq_no = server_seq_no(session, content_related=False)
                message = struct.pack("<qii", container_id, seq_no, len(container)) + container
            plaintext = struct.pack("<qq", record.salt, session.session_id) + message
        await self.transport.send(encrypt_to_client(record.auth_key, plaintext))


def _read(body: bytes | object) -> object:
    """The TL object of a message body, gzip_packed opened."""
    while isinstance(body, bytes | GzipPacked):
        data = body.data if isinstance(body, GzipPacked) else body
        with BinaryReader(data) as reader:
            body = reader.tgread_object()
    return body
