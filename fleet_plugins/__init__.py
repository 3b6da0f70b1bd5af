"""The plugins shipped with the fleet (`common.plugin_catalogue` finds every module here): `autoreply` and `watch`.

They are real plugins and the examples to copy: see "Writing a plugin" in the README.
"""
