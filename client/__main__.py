"""``python -m client`` is the ``rvkvm`` command."""

from .cli import main

raise SystemExit(main())
