"""Opening the control plane's Redis and database, with failures turned into one clear `ServiceUnavailable`."""

from __future__ import annotations

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from common.redis_target import describe_redis_error, open_redis
from config import mask_url


class ServiceUnavailable(RuntimeError):
    """Redis or the database cannot be reached; the message says which and where."""


def connect_redis(url: str, check: bool = True) -> Redis:
    client = open_redis(url, socket_timeout=5, socket_connect_timeout=3, decode_responses=True)
    if check:
        try:
            client.ping()
        except RedisError as error:
            raise ServiceUnavailable(
                f"Redis unreachable at {mask_url(url)}: {describe_redis_error(error, url)}"
            ) from None
    return client


def connect_database(url: str) -> tuple[Engine, sessionmaker[Session]]:
    from database.engine import open_database

    try:
        return open_database(url)
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise ServiceUnavailable(f"database unreachable at {mask_url(url)}: {reason}") from None
