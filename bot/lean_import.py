"""Import aiogram with its Telegram types built on first use instead of all at import time.

aiogram 3 builds the pydantic schema of each of its ~400 types when `aiogram.types` is imported (its models
say `defer_build=True`, then it calls `model_rebuild` on every one to resolve forward references). That
costs the bot ~110 MB of memory and seconds of start-up for types it never sees. Here those rebuild calls
are skipped during the import, and the names they would have used are put into each types module's
namespace, so pydantic's own on-first-use build resolves the same forward references. The test suite
checks that every aiogram type still builds and validates this way.

Call `import_aiogram()` before anything imports aiogram (run.py does).
"""

from __future__ import annotations

import sys
from typing import Any

_done = False


def import_aiogram() -> None:
    global _done
    if _done or "aiogram" in sys.modules:
        _done = True
        return
    import pydantic

    original = pydantic.BaseModel.model_rebuild.__func__  # type: ignore[attr-defined]
    deferred: list[tuple[type, dict[str, Any]]] = []

    def defer(cls: type, *args: Any, _types_namespace: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        if cls.__module__.startswith("aiogram.types") and _types_namespace is not None and not args and not kwargs:
            deferred.append((cls, _types_namespace))
            return None
        return original(cls, *args, _types_namespace=_types_namespace, **kwargs)

    pydantic.BaseModel.model_rebuild = classmethod(defer)  # type: ignore[method-assign,assignment]
    try:
        import aiogram  # noqa: F401
    finally:
        pydantic.BaseModel.model_rebuild = classmethod(original)  # type: ignore[method-assign,assignment]
    for cls, namespace in deferred:
        module = sys.modules[cls.__module__].__dict__
        for name, value in namespace.items():
            module.setdefault(name, value)
    _done = True
