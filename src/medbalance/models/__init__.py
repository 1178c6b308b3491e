"""The models layer: backbones (timm and a small CNN) and the batch transform (augmentation and
normalisation on the device). Imports :mod:`medbalance.data` and :mod:`medbalance.core`."""

__all__: list[str] = []
