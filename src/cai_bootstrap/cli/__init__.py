"""The `cai-bootstrap` command line (typer + rich): one module per group of commands.

Importing a command module registers its commands on `app`.
"""

from cai_bootstrap.cli import evaluate, export, inference, runs, tools  # noqa: F401  (register the commands)
from cai_bootstrap.cli.common import app

__all__ = ["app"]
