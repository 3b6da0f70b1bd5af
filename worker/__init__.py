"""The worker process that runs on every server: presence, its Celery queue, and the account manager.

It imports only `celery_app` (the wire contract) and `config`, never `database/` or `bot/`: a remote server
needs nothing but Redis and its secrets.
"""
