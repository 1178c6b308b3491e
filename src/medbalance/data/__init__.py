"""The data layer: finding images (folders, manifests, MedMNIST arrays, DICOM), splits that keep
patients together, the presize cache, batches for the loop, and ``inspect``'s checks.

Imports only :mod:`medbalance.core`."""

__all__: list[str] = []
