"""Leaf helpers every part of the project may use, that never cross the wire and import nothing of the project:
text validation and masking (`validation`), safe free text (`redaction`), encryption at rest (`crypto`), secrets
sealed to one key pair (`sealing`), Telethon
session formats (`sessions`), device identities (`devices`), the plugin catalogue (`plugin_catalogue`) and the
Fluent catalogues behind the bots' texts (`catalogue`)."""
