"""The evaluation layer: metrics and bootstrap CIs, thresholds and the :class:`Decision`,
scoring a split, a trained model rebuilt from its checkpoint, predict, export and Grad-CAM.

Imports models, data and core; never training, reporting or anything above."""

__all__: list[str] = []
