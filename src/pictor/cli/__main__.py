"""`python -m pictor.cli`: the same as the `pictor` command."""

from pictor.cli import main

raise SystemExit(main())
