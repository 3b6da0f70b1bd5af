"""The durable record: SQLAlchemy models, the engine/schema bootstrap, and the operations that write."""
