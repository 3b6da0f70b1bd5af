"""The plugins shipped with the fleet (`worker.plugins` finds every module here): `autoreply` and `watch`.

They are real plugins and the examples to copy: see "Writing a plugin" in the README.
"""
