"""The comparison layer: remedy presets and files, the paired statistics between runs, and the
comparison tables and page."""

__all__: list[str] = []
