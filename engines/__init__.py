"""Facts about inference engines that both the harness and the compression pipeline need (below both)."""
