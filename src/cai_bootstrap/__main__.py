"""`python -m cai_bootstrap`: the command line."""

from cai_bootstrap.cli import app

app()
