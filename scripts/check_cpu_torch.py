"""Fail loudly if a CUDA build of torch or any nvidia-* package got installed."""

from __future__ import annotations

import sys
from importlib import metadata


def main() -> int:
    import torch

    nvidia = sorted(
        d.metadata["Name"]
        for d in metadata.distributions()
        if d.metadata["Name"].lower().startswith("nvidia")
    )
    problems = []
    if torch.version.cuda is not None:
        problems.append(f"torch {torch.__version__} is a CUDA build (CUDA {torch.version.cuda})")
    if nvidia:
        problems.append(f"nvidia packages installed: {', '.join(nvidia)}")
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        print(
            "Reinstall with: pip install torch==2.13.0 (the CPU build) before anything else.",
            file=sys.stderr,
        )
        return 1
    print(f"ok: torch {torch.__version__}, CPU build, no nvidia packages")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
