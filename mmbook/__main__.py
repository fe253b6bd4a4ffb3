"""``python -m mmbook`` runs the ``mmbook`` command line."""

from mmbook.cli import main

raise SystemExit(main())
