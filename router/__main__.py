"""`python -m router` is the `cascade` command."""

from router.cli.main import main

raise SystemExit(main())
