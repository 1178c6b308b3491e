"""The workflow layer: train -> decide -> evaluate -> report, compare, demo. The public Python
API (``medbalance.train``, ``medbalance.inspect``, ...) is this layer."""

__all__: list[str] = []
