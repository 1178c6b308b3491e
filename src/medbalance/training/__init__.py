"""The training layer: the configuration, samplers, losses, the trainer and the plain training
loop (``fit``), and the learning-rate finder. ``fit`` only trains: choosing the decision,
evaluating and reporting are the workflow's steps.

Imports evaluation (metrics, scoring), models, data and core."""

__all__: list[str] = []
