"""The ``mamori`` command line: ``app`` builds the Typer app; one module per command."""
