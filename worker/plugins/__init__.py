"""Plugins: the operator's own code running inside each account's Telegram client.

What a plugin author writes against, and what it may do, is `worker.plugins.api` (start there). The rest is
the worker's side:

- `host`: `PluginHost` loads, reconfigures and unloads the plugins of the accounts running on this worker,
  and isolates them: what a handler or task raises is caught, counted, logged, reported and shown in the
  plugin's status; the account and the other plugins carry on.
- `loaded`: the bookkeeping of one plugin loaded for one account, shared by the host and the plugin's
  context and client.
- `watchdog`: `LoopWatchdog` notices an event loop stalled longer than PLUGIN_BLOCK_SECONDS and names the
  plugin whose task was running.
- `writer`: `PluginWriter` writes plugin statuses and `plugin.*` wire events to Redis from one thread.
- `store`: `PluginStore`, a plugin's own key-value store in Redis (`context.kv`).

Which plugins exist and whether a configuration fits one is `common.plugin_catalogue` (shared with the
control plane). This is a guard rail, not a sandbox: plugins run inside the worker's process, so install only
code you trust.

Threads: `attach`, `apply` and `detach` run on the account's event loop. Statuses and events reach Redis
through one write-behind thread, and `kv` calls run in the loop's executor, so no bookkeeping blocks a loop.
Statuses and events are written only while this worker holds the account's lease (or nobody does).
"""
