"""The product's version, reported by workers and shown by the CLI and the bot."""

__version__ = "0.1.0"
