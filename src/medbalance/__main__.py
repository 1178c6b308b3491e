"""``python -m medbalance`` (also what ``torchrun -m medbalance`` runs)."""

from medbalance.cli.app import main

main()
