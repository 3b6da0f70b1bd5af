"""The durable record: SQLAlchemy models, the engine/schema bootstrap, and the query helpers by subject
(`workers`, `accounts`, `account_status`, `events`; `errors` for their refusals)."""
