"""medbalance: train and report medical image classifiers on class-imbalanced data.

The top-level import stays light (no torch, no matplotlib) so the command line answers fast;
the heavy modules are imported where they are used.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
