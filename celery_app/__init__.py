"""The wire contract between the control plane and the workers.

Everything that crosses the wire is defined here once: the Celery app factory (`app`), task names and
payload schemas (`contract`), the per-worker queue name, and the Redis layout for presence (`presence`),
events (`events`) and keys (`keys`). The control plane and the workers import this package; it imports
neither of them.
"""
