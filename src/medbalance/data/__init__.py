"""The data layer: finding images (folders, manifests, MedMNIST arrays, DICOM), splits that keep
patients and identical files together, the presize cache, batches for the loop, ``inspect``'s
checks and the data warnings of a run.

Imports only :mod:`medbalance.core`."""

__all__: list[str] = []
