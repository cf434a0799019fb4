"""The `inspection` Typer app, its one error handler and the helpers every command module shares.

Every command turns a failure into one `error:` line naming the fix: a `CliError` carries its exit
code (`UsageError`: 2), a config error is a usage mistake (2), any other failure exits 1;
`inspection --debug ...` (or INSPECTION_DEBUG=1) shows the traceback instead. Commands do not catch
errors to print them: they raise, and `_errors` renders. Tables fold long cells instead of cutting
them, so they stay readable at 80 columns.
"""

from __future__ import annotations

import functools
import shlex
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..config import ConfigError, Settings, load_settings
from .errors import CliError

# typer >= 0.26 runs on its own copy of click: its context stack is not `click`'s, even where click
# is installed beside it (uvicorn needs click), so take the function typer itself uses.
try:
    from typer.main import get_current_context  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - older typer re-exports nothing here
    from click import get_current_context  # type: ignore[no-redef]

F = TypeVar("F", bound=Callable[..., Any])


def _debug() -> bool:
    ctx = get_current_context(silent=True)
    return bool(ctx is not None and ctx.find_root().params.get("debug"))


def _errors(command: F) -> F:
    """Run a command; an exception becomes one `error:` line (exit 2 usage, 1 runtime), unless --debug."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if _debug():
                raise
            if isinstance(exc, CliError):
                code = exc.exit_code
            else:
                code = 2 if isinstance(exc, ConfigError) else 1
            known = isinstance(exc, (CliError, OSError, ValueError, RuntimeError, LookupError, ImportError))
            text = str(exc) if known and str(exc) else f"{type(exc).__name__}: {exc}"
            err_console.print(f"[red]error:[/red] {escape(text)}", soft_wrap=True)  # messages name extras like inspection[gpu]
            if not isinstance(exc, CliError):  # a CliError's message is the whole story
                err_console.print("(run `inspection --debug ...` for the traceback)", style="dim", soft_wrap=True)
            raise typer.Exit(code) from None

    return run  # type: ignore[return-value]


class _Typer(typer.Typer):
    """A Typer whose commands all report failures through `_errors`."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        register = super().command(*args, **kwargs)

        def decorator(fn: F) -> F:
            register(_errors(fn))
            return fn

        return decorator


app = _Typer(help="Streaming edge inspection: Kafka camera frames -> tiled batch detection -> SQL.", no_args_is_help=True)
model_app = _Typer(
    help="Models: list, add your own, convert to ONNX, quantize to INT8, build TensorRT engines.", no_args_is_help=True
)
db_app = _Typer(help="Results database: migrations, retention.", no_args_is_help=True)
rules_app = _Typer(help="Inspection rules: try a rule set on the stored cars before it goes live.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(db_app, name="db")
app.add_typer(rules_app, name="rules")
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", envvar="INSPECTION_DEBUG", help="show the traceback of a failure instead of one error line"
    ),
) -> None:
    """Streaming edge inspection: Kafka camera frames -> tiled batch detection -> SQL."""


def _table(title: str | None, columns: list[str], *, key_width: int = 0, right: bool = True, fold: tuple[str, ...] = ()) -> Table:
    """A table that stays readable at 80 columns: ids and numbers are never cut (`car-00…`) nor
    broken; only the text columns named in `fold` (and the first, when `key_width` is 0) wrap."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for i, name in enumerate(columns):
        wraps = name in fold or (i == 0 and not key_width)
        table.add_column(
            name,
            justify="left" if i == 0 or not right else "right",
            no_wrap=not wraps,
            overflow="fold",
            min_width=key_width if i == 0 and key_width else None,
        )
    return table


DEMO_SHOTS = 6  # per camera: 5 × 6 = 30 frames, about a minute on 2 CPU cores with the onnxruntime backend

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML site config (configs/*.yaml); env INSPECTION__SECTION__KEY overrides")


def wait_until_stopped() -> None:
    """Block until Ctrl-C or SIGTERM (a command serving in the background: broker, dashboard)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass


def _settings(config: Optional[Path], **overrides: Any) -> Settings:
    return load_settings(config, overrides)  # a ConfigError is a usage mistake (exit 2, see `_errors`)


LogFormatOpt = typer.Option(None, "--log-format", help="text or json (one JSON object per line); default: config logging.format")


def _model_errors() -> tuple[type[BaseException], ...]:
    """Model-layer errors whose message names the fix: shown as one `error:` line."""
    from ..detect import MissingBackendError, ModelMismatchError, ModelNotFoundError, UnknownModelError

    return (MissingBackendError, ModelMismatchError, ModelNotFoundError, UnknownModelError)


def _command_line() -> str:
    """The running command as a user would type it, every option given (defaults too) and nothing
    left out: written beside results so a run can be repeated exactly."""
    ctx = get_current_context()
    words = ["inspection", *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if value is None or not param.opts:
            continue
        if getattr(param, "is_flag", False) and isinstance(value, bool):
            names = param.opts if value else getattr(param, "secondary_opts", [])
            words.extend(names[:1])
            continue
        for each in value if isinstance(value, (list, tuple)) else [value]:
            words.append(f"{max(param.opts, key=len)}={each}")
    return shlex.join(words)
