"""The console in a browser (``orin-console web``): textual-serve runs one attached console
per browser session, behind :mod:`orin_console.web.guard`. Never imported by the core."""
