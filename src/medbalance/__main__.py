"""``python -m medbalance`` (also what ``torchrun -m medbalance`` runs)."""

from medbalance.cli import main

main()
