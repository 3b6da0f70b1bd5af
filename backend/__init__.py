"""The control plane: the reconciler (`reconciler`, acting while it holds the `leader` lock), the services the CLI
and bot call, and the CLI itself."""
