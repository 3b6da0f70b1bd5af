"""Helpers for the tests: real processes of the stack, databases, waiting."""
