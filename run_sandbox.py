"""Entry point: `python run_sandbox.py [--host H] [--port P] [--dir D] [--chatter SECONDS]` — the Telegram
sandbox (sandbox/main.py). `make run` starts it by itself when nothing of Telegram is configured."""

from sandbox.main import main

if __name__ == "__main__":
    main()
