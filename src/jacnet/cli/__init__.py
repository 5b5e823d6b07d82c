"""The ``jacnet`` command: train, predict, evaluate, info, export, gradcheck.

Every error a user can cause (a missing file, an unknown column, a bad option value, a
file that is not a model) ends the command with exit code 2 and one line on stderr;
``--debug`` prints the traceback as well. ``jacnet gradcheck`` exits 1 when a check fails.
"""

from __future__ import annotations

import sys
import traceback

import typer

from . import check, export, models, train  # noqa: F401  (each registers its command on app)
from .common import CliError, app

__all__ = ["app", "main", "CliError"]

# CliError, jacnet.data.DataError and jacnet.io.ModelFileError are ValueErrors: naming them
# here would import scikit-learn (through jacnet.io) before every command, --help included.
_USER_ERRORS = (ValueError, OSError)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``jacnet`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in (args[: args.index("--")] if "--" in args else args)
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="jacnet", standalone_mode=False)
    except typer.TyperException as exc:  # click's usage errors: bad option values and such
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.format_message())
            sys.exit(0)
        _fail(exc.format_message(), getattr(exc, "exit_code", 2), debug)
    except (KeyboardInterrupt, typer.Abort):
        print("jacnet: interrupted", file=sys.stderr)
        sys.exit(130)
    except _USER_ERRORS as exc:
        _fail(str(exc), 2, debug)
    except Exception as exc:  # a bug: still one line, the traceback with --debug
        _fail(f"internal error {type(exc).__name__}: {exc} (rerun with --debug for the "
              "traceback)", 1, debug)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    line = " ".join(message.split()) or "failed"
    print(f"jacnet: error: {line}", file=sys.stderr)
    sys.exit(code)
