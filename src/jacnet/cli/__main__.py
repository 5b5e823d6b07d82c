"""``python -m jacnet.cli``: the same as the ``jacnet`` console script."""

from . import main

main()
