"""What every command shares: the typer app, the consoles, one way to fail, the errors users see plainly."""

from __future__ import annotations

import errno
import logging

import typer
from rich.console import Console
from rich.markup import escape

#: exit codes (docs/cli.md): scripts can tell a failed gate from an error
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_GATE_STOPPED, EXIT_GATE_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_CODES = (  # (code, short, what it means)
    (EXIT_OK, "done", "done; a gate that failed where the curriculum lets the run continue still exits 0 without --strict"),
    (EXIT_ERROR, "error", "an error, shown as one line: bad settings, a refused or locked run directory, a missing "
                          "file, a full disk"),
    (EXIT_USAGE, "usage error", "a command-line usage error: unknown option, bad value"),
    (EXIT_GATE_STOPPED, "gate failed, run stopped", "run/resume: a stage's gate failed and the run stopped there "
                                                     "(on_fail: stop)"),
    (EXIT_GATE_FAILED, "gate failed (--strict)", "run/resume --strict: a stage's gate failed and the run continued "
                                                  "past it (on_fail: continue)"),
    (EXIT_INTERRUPTED, "interrupted", "interrupted (Ctrl-C); `resume` continues a run where it stopped"),
)
HELP = (
    "Bootstrap a small base language model into an assistant, one verified skill at a time: each stage's model "
    "writes the next stage's training data, verifiers keep what is correct, and a held-out gate decides whether "
    "the stage passed.\n\nStart with `cai-bootstrap run --preset tiny` (minutes on a CPU), then `status`, "
    "`report`, `export`. More: docs/cli.md."
)
EPILOG = "Exit codes: " + "; ".join(f"{code} {short}" for code, short, _ in EXIT_CODES) + " (docs/cli.md)."

app = typer.Typer(add_completion=False, no_args_is_help=True, help=HELP, epilog=EPILOG)
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


def _print_version(value: bool) -> None:
    if value:
        from cai_bootstrap import __version__

        console.print(f"cai-bootstrap {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="log more"),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="print the version and exit"),
) -> None:
    _setup_logging(verbose)


def make_cli_engine(model: str, dtype: str, batch_size: int, backend: str = "transformers", base_url: str | None = None):
    """An engine for one command's model (loaded now, so a bad name fails before any work)."""
    from cai_bootstrap.engines.factory import make_engine
    from cai_bootstrap.engines.settings import EngineSettings

    return make_engine(model, EngineSettings(backend=backend, dtype=dtype, batch_size=batch_size, base_url=base_url))
