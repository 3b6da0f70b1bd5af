"""Leaf helpers the fleet and the board share, that never cross the wire and import nothing of the project."""
