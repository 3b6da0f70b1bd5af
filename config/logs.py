"""Logging for every process: text or JSON lines on stderr, and the loggers that could leak kept quiet."""

from datetime import UTC, datetime

from config.environment import read


class JsonLogFormatter:
    """`LOG_FORMAT=json`: one JSON object per line (time, level, logger, message, and the exception if any)."""

    def format(self, record: object) -> str:
        import json
        import logging

        assert isinstance(record, logging.LogRecord)
        document: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            document["exception"] = logging.Formatter().formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False)


def log_format() -> str:
    """LOG_FORMAT: `text` (the default) or `json`; checked with LOG_LEVEL by every `load_*_settings()`."""
    return read("Logs").LOG_FORMAT


def configure_logging(level: str) -> None:
    """Log to stderr with timestamps (or as JSON lines with LOG_FORMAT=json); secrets never reach loggers."""
    import logging

    if log_format() == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(JsonLogFormatter())  # type: ignore[arg-type]
        logging.basicConfig(level=level, handlers=[handler], force=True)
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":
        # celery.app.trace logs every task's return value: results may carry (encrypted) sessions.
        for noisy in ("alembic", "aiogram.event", "telethon", "celery.app.trace"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore", message=".*superuser privileges.*")
