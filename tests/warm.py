"""Child processes that start warm: forked from a server that has imported the framework already.

A test that runs a CLI or a scenario in a process of its own pays the interpreter's start and the import of
the framework with transformers' models each time (TensorFlow about 12 s on 2 cores, torch about 8 s).
`run` and `start` fork the child instead from a `multiprocessing` forkserver of that framework, which made
those imports once in the environment its CLI gives them: a real process of its own (its pid, signals, exit
status, files) that starts in milliseconds. What differs from a fresh interpreter is only what was decided
at import time, so the tests of start-up itself (its noise, an environment an import reads, a process that
never imports this project) keep using `subprocess`.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import runpy
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
import weakref
from multiprocessing import forkserver, popen_forkserver
from pathlib import Path

PRELOAD = "MLM_TESTS_WARM_PRELOAD"

# Imported by a forkserver as it starts (PRELOAD names its framework): the imports its children share, made as
# the CLI makes them, from the environment the tests give a child (without the pytest side's USE_TF).
_preload = os.environ.pop(PRELOAD, None)
if _preload:
    for _name in ("USE_TF", "USE_TORCH"):
        os.environ.pop(_name, None)
    import mlm_toolkit.compat

    mlm_toolkit.compat.trim_imports = True  # as the CLIs' command group sets it
if _preload == "tf":
    import tf_mlm

    with tf_mlm.prepared():
        import tf_mlm.training  # noqa: F401  (TensorFlow, transformers' TF models, datasets)
elif _preload == "pt":
    import pt_mlm

    with pt_mlm.prepared():
        import pt_mlm.training  # noqa: F401  (torch, Accelerate, transformers' models, datasets)
if _preload:  # each run's loss curve, as the run draws it: about 1 s to import
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401

# multiprocessing keeps one forkserver per process; the tests need one per framework.
_SERVERS = {"tf": forkserver.ForkServer(), "pt": forkserver.ForkServer()}
for _server in _SERVERS.values():
    _server.set_forkserver_preload([__name__])


class _Popen(popen_forkserver.Popen):
    def _launch(self, process_obj) -> None:
        module_server, forkserver.connect_to_new_process = (
            forkserver.connect_to_new_process,
            _SERVERS[process_obj.framework].connect_to_new_process,
        )
        try:
            super()._launch(process_obj)
        finally:
            forkserver.connect_to_new_process = module_server


class _Process(multiprocessing.context.ForkServerProcess):
    framework = "tf"

    @staticmethod
    def _Popen(process_obj) -> _Popen:
        return _Popen(process_obj)


class WarmProcess:
    """The part of `subprocess.Popen` the tests use, for a child forked from the warm server."""

    def __init__(self, framework: str, argv: list[str], env: dict, cwd: str | None) -> None:
        self._files = tempfile.mkdtemp(prefix="warm-")
        weakref.finalize(self, shutil.rmtree, self._files, ignore_errors=True)
        self._stdout, self._stderr = (os.path.join(self._files, name) for name in ("stdout", "stderr"))
        # Read by the forkserver if this start is the one that starts it (Python 3.11's ignores the sys.path it
        # is given: it finds this module through PYTHONPATH).
        saved = {name: os.environ.get(name) for name in (PRELOAD, "PYTHONPATH")}
        os.environ.update({PRELOAD: framework, "PYTHONPATH": os.pathsep.join(sys.path)})
        try:
            self._process = _Process(target=_child, args=(argv, env, cwd or os.getcwd(), self._stdout, self._stderr))
            self._process.framework = framework
            self._process.start()
        finally:
            for name, value in saved.items():
                os.environ.pop(name) if value is None else os.environ.update({name: value})
        self.pid = self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(self._process.name, timeout)
        return self._process.exitcode

    def send_signal(self, number: int) -> None:
        os.kill(self.pid, number)

    def kill(self) -> None:
        self._process.kill()

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        return tuple(Path(path).read_text(errors="replace") for path in (self._stdout, self._stderr))


def start(framework: str, argv: list, env: dict, cwd: str | None = None) -> WarmProcess:
    """`argv` as `python ARGV...` would run it (`-m MODULE ...`, `-c CODE ...` or `SCRIPT ...`), in a warm child of the
    `framework` ("tf" or "pt") server."""
    return WarmProcess(framework, [str(a) for a in argv], env, cwd)


def run(
    framework: str, argv: list, env: dict, cwd: str | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """`subprocess.run(capture_output=True, text=True)` for `start`."""
    process = start(framework, argv, env, cwd)
    try:
        stdout, stderr = process.communicate(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def _child(argv: list[str], env: dict, cwd: str, stdout: str, stderr: str) -> None:
    for fd, path in ((1, stdout), (2, stderr)):
        with open(path, "wb") as sink:
            os.dup2(sink.fileno(), fd)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as Python starts (the forkserver ignores it)
    atexit._clear()  # the server's own: they would end it
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    code = 0
    try:
        if argv[0] == "-m":
            sys.argv = argv[1:]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        elif argv[0] == "-c":
            sys.argv = ["-c", *argv[2:]]
            exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
        else:
            sys.argv = argv
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as exit_:  # as the interpreter ends on it: sys.exit(None), (N) or ("message")
        code = exit_.code or 0
        if not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        atexit._run_exitfuncs()  # the child's own, as an interpreter's end runs them (multiprocessing's does not)
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)
