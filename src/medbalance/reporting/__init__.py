"""The reporting layer: the self-contained HTML report of one run, drawn from its run folder."""

__all__: list[str] = []
