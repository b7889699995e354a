"""What the CLIs print: logging set up once per process, errors as one line (a crash log for the rest), and the
summary of a run.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable

import click

from mlm_toolkit.errors import MLMError, Terminated


def _terminate(signum, frame) -> None:
    raise Terminated


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with control characters escaped (a folder named with ESC or CR would drive the terminal)."""
    return _CONTROL.sub(lambda found: found.group().encode("unicode_escape").decode(), text)


class PrintableFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))


def reports_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """The toolkit's errors as one line and exit 2 (bad usage, as click's) or 1 (a failed run), no traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import signal
        import threading

        main_thread = threading.current_thread() is threading.main_thread()
        before = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
        try:
            return command(*args, **kwargs)
        except MLMError as error:
            click.echo(f"Error: {printable(str(error))}", err=True)
            sys.exit(error.exit_code)
        except Terminated:
            click.echo("Terminated (SIGTERM).", err=True)
            sys.exit(143)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except OSError as error:  # a full disk, a folder that became read-only: say which file and why
            click.echo(f"Error: {printable(describe_os_error(error))} (details: {write_crash_log()})", err=True)
            sys.exit(1)
        except Exception as error:  # nobody foresaw this one: one line, and the traceback in a file
            what = printable(f"unexpected {type(error).__name__}: {error}")
            click.echo(f"Error: {what} (traceback: {write_crash_log()})", err=True)
            sys.exit(1)
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, before)

    return wrapper


def describe_os_error(error: OSError) -> str:
    import errno
    import shutil

    where = error.filename or "a file"
    message = f"{error.strerror or error} while writing {where}"
    if error.errno == errno.ENOSPC:
        folder = Path(str(where)).parent if error.filename else Path.cwd()
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        free = shutil.disk_usage(folder).free / 2**20
        # A run's folder is the file's, or its parent (`.tmp-model/...`): resumable if it holds a checkpoint.
        near = [folder, *folder.parents][:2]
        resumable = any((near / "backup").is_dir() or any(near.glob("checkpoint-*")) for near in near)
        advice = "--resume auto" if resumable else "run it again (there is no checkpoint to resume from)"
        message += f"; {free:,.0f} MiB free there: free some space and {advice}"
    return message


def write_crash_log() -> str:
    """The current exception's traceback in a file of its own; returns its path."""
    import tempfile
    import time
    import traceback

    path = Path(tempfile.gettempdir()) / f"mlm-toolkit-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    path.write_text(traceback.format_exc())
    return str(path)


def is_main_process() -> bool:
    """False in every process but the first of a torchrun/accelerate launch (they set RANK)."""
    return os.environ.get("RANK", "0") == "0"


def setup_logging(verbose: bool = False) -> None:
    # Under torchrun/accelerate launch the main process speaks for all, warnings included (each process
    # would print the same one); the others print only errors, theirs alone.
    quiet = logging.WARNING if is_main_process() else logging.ERROR
    handler = logging.StreamHandler()
    handler.setFormatter(PrintableFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=logging.INFO if is_main_process() else logging.ERROR, handlers=[handler])
    # Library chatter (HTTP, fonts, TF start-up) would bury the run's own derived numbers.
    for noisy in "httpx urllib3 matplotlib datasets filelock absl tensorflow h5py accelerate".split():
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else quiet)
    if not is_main_process():  # transformers and datasets log through handlers of their own
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("DATASETS_VERBOSITY", "error")


def print_summary(results, output_dir: str) -> None:
    """The lines a user looks for when a run ends (`results`: a `mlm_toolkit.metrics.Results`)."""
    if not is_main_process():
        return
    for when, at in (("before:", results.before), ("after: ", results.after)):
        click.echo(f"perplexity {when} {at.perplexity:.2f} (eval loss {at.eval_loss:.4f}), accuracy {at.accuracy:.4f}")
    speed = "n/a" if results.train_tokens_per_second is None else f"{results.train_tokens_per_second:,.0f}"
    steps = f"{results.optimizer_steps} optimizer steps"
    click.echo(f"{steps}, {speed} train tokens/s on {results.device}; saved to {printable(output_dir)}")
