"""`python -m cai_bootstrap.cli`."""

from cai_bootstrap.cli import app

app()
