"""The control plane: the reconciler (`listener`), the services the CLI and bot call, and the CLI itself."""
