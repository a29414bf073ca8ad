"""``python -m cfa.cli`` runs the ``cfa`` command."""

from cfa.cli import main

main()
