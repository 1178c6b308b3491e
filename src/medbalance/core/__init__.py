"""Shared utilities at the bottom of the layers: atomic file writes, checkpoint files, the
run-folder layout, figure helpers and ``torch.distributed`` helpers. Imports nothing else from
medbalance."""

__all__: list[str] = []
