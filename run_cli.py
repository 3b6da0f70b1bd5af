"""Entry point: `python run_cli.py --help` — the operators' command line."""

from backend.cli import main

if __name__ == "__main__":
    main()
