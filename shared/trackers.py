"""Experiment trackers for the Keras path, with the tags and steps of the PyTorch path's Accelerate trackers.

Each is its library's plain API, with no framework: TensorBoard through its own event writer, MLflow, Weights
& Biases and Trackio (their usual environment variables say where). Each opener returns (log, finish).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from mlm_toolkit.errors import RunError

Opened = tuple[Callable[..., Any], Callable[[], Any]]  # log(values, step=N), finish()


def tensorboard(folder: Path, project: str, config: dict[str, Any]) -> Opened:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(folder / project))

    def log(values: dict[str, float], step: int) -> None:
        summary = Summary(value=[Summary.Value(tag=tag, simple_value=value) for tag, value in values.items()])
        writer.add_event(Event(wall_time=time.time(), step=step, summary=summary))

    return log, writer.close


def mlflow_store_in(folder: Path) -> None:
    """MLflow's runs beside TensorBoard's (OUTPUT/runs/mlruns) unless MLFLOW_TRACKING_URI names a store: its own
    default, a SQLite file in the working folder, needs SQLAlchemy and fails without it (MLflow 3), which
    takes a file store only when allowed."""
    import os

    if "MLFLOW_TRACKING_URI" not in os.environ:
        os.environ.update(MLFLOW_TRACKING_URI=(folder / "mlruns").resolve().as_uri(), MLFLOW_ALLOW_FILE_STORE="true")


def mlflow(folder: Path, project: str, config: dict[str, Any]) -> Opened:
    import mlflow

    mlflow_store_in(folder)
    mlflow.set_experiment(project)
    mlflow.start_run()
    mlflow.log_params({key: str(value)[:6000] for key, value in config.items()})  # MLflow's limit, as strings
    return mlflow.log_metrics, mlflow.end_run


def wandb(folder: Path, project: str, config: dict[str, Any]) -> Opened:
    import wandb

    run = wandb.init(project=project, config=config, dir=str(folder))
    return run.log, run.finish


def trackio(folder: Path, project: str, config: dict[str, Any]) -> Opened:
    import trackio

    trackio.init(project=project, config=config)
    return trackio.log, trackio.finish


KINDS = {"tensorboard": tensorboard, "mlflow": mlflow, "wandb": wandb, "trackio": trackio}


def tensorboard_without_tensorflow() -> None:
    """Keep tensorboard from importing TensorFlow into a PyTorch process: the module its TensorFlow-free build
    adds, `tensorboard.compat.notf`, makes it use its stub."""
    import sys
    import types

    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))


def tracker_failed(error: Exception) -> RunError:
    """A tracker that cannot start (a server not answering, a store refused): one line naming --report-to."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return RunError(f"--report-to: a tracker could not start: {type(error).__name__}: {first}")


class Trackers:
    """The trackers --report-to names, as one: log each step's values to all, finish all."""

    def __init__(self, names: tuple[str, ...], folder: Path, project: str, config: dict[str, Any]) -> None:
        try:
            self.trackers = [KINDS[name](folder, project, config) for name in names]
        except Exception as error:  # each library fails its own way
            raise tracker_failed(error) from error

    def log(self, values: dict[str, float], step: int) -> None:
        for log, _ in self.trackers:
            log(values, step=step)

    def finish(self) -> None:
        for _, finish in self.trackers:
            finish()
        self.trackers = []
