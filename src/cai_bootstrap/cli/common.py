"""What every command shares: the typer app, the consoles, one way to fail, the errors users see plainly."""

from __future__ import annotations

import errno
import logging

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(add_completion=False, no_args_is_help=True, help="The `cai-bootstrap` command line (typer + rich).")
console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def known_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message is the whole story: printed as one line, no traceback."""
    from cai_bootstrap.config import ConfigError
    from cai_bootstrap.constitution import ConstitutionError
    from cai_bootstrap.jsonl import JsonlError
    from cai_bootstrap.models.loading import ModelLoadError
    from cai_bootstrap.pipeline.setup import RunError
    from cai_bootstrap.report import ReportError
    from cai_bootstrap.runs.lock import RunLocked

    return (ConfigError, ConstitutionError, JsonlError, ModelLoadError, RunError, RunLocked, ReportError,
            FileNotFoundError, KeyError)


def disk_full(exc: BaseException) -> str | None:
    """A one-line message when ``exc`` says the disk is full (``ENOSPC``, also as safetensors'
    ``SafetensorError`` text), else None. What was written stays consistent: resume continues."""
    text = str(exc)
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in text \
            or "StorageFull" in text:
        return f"the disk is full ({type(exc).__name__}); free some space, then resume (finished work is kept)"
    return None


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not verbose:
        import transformers

        transformers.logging.set_verbosity_error()


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="log more")) -> None:
    """Turn a base LM into a constitutionally aligned assistant by progressive bootstrapping."""
    _setup_logging(verbose)


def make_cli_engine(model: str, dtype: str, batch_size: int, backend: str = "transformers", base_url: str | None = None):
    """An engine for one command's model (loaded now, so a bad name fails before any work)."""
    from cai_bootstrap.engines.factory import make_engine
    from cai_bootstrap.engines.settings import EngineSettings

    return make_engine(model, EngineSettings(backend=backend, dtype=dtype, batch_size=batch_size, base_url=base_url))
