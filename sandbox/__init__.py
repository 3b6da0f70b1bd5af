"""The Telegram sandbox: a Telegram of our own on 127.0.0.1 for trying the fleet and developing plugins.

`sandbox.mtproto` is the loopback MTProto server (real Telethon clients connect, log in, send and receive
pushed updates); `sandbox.people` the scripted contacts that write to accounts and answer them;
`sandbox.control` the local control channel the CLI's `sandbox` commands use; `sandbox.main` the process
(`run_sandbox.py`). Nothing of the real fleet imports it: a worker reaches it only through
TG_MTPROTO_DC / TG_MTPROTO_PUBKEY, as it would reach any MTProto server.
"""
