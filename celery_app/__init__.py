"""The wire contract between the control plane and the workers.

Everything that crosses the wire is defined here once: the Celery app factory (`app`), task names and
payload schemas (`contract`), the per-worker queue name, and the Redis layout and encoding of presence
(`presence`), account states (`account_state`), reports (`report`), events (`events`), leases (`leases`),
operations (`operations`), plugin configuration (`plugin_config`), rejections (`rejections`) and keys (`keys`).
The control plane and the workers import this package; it imports neither of them, only the leaf helpers in
`common/` and `config`.
"""


def __getattr__(name: str) -> object:
    """`celery -A celery_app ...` and Flower look for `celery_app.celery`: built on first use, not at import."""
    if name == "celery":
        import sys
        from pathlib import Path

        # Celery's command line imports this package from the working directory, then takes that directory
        # off sys.path again; the app needs the project's `config` module beside it.
        root = str(Path(__file__).resolve().parent.parent)
        if root not in sys.path:
            sys.path.append(root)
        from celery_app.app import app_from_environment

        app = app_from_environment()
        globals()["celery"] = app
        return app
    raise AttributeError(f"module 'celery_app' has no attribute {name!r}")
