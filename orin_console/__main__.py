"""``python -m orin_console`` is the same as the ``orin-console`` command."""

from orin_console.cli.main import main

raise SystemExit(main())
