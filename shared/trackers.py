"""Experiment trackers for the Keras path, with the tags and steps of the PyTorch path's Accelerate trackers.

Each is its library's plain API, with no framework: TensorBoard through its own event writer, MLflow, Weights
& Biases and Trackio (their usual environment variables say where).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mlm_toolkit.config import RunError


class TensorBoard:
    def __init__(self, folder: Path, project: str, config: dict[str, Any]) -> None:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.writer = EventFileWriter(str(folder / project))

    def log(self, values: dict[str, float], step: int) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        summary = Summary(value=[Summary.Value(tag=tag, simple_value=value) for tag, value in values.items()])
        self.writer.add_event(Event(wall_time=time.time(), step=step, summary=summary))

    def finish(self) -> None:
        self.writer.close()


class MLflow:
    def __init__(self, folder: Path, project: str, config: dict[str, Any]) -> None:
        import mlflow

        self.mlflow = mlflow
        mlflow.set_experiment(project)
        self.run = mlflow.start_run()
        # MLflow keeps parameters of at most 6,000 characters, as strings
        mlflow.log_params({key: str(value)[:6000] for key, value in config.items()})

    def log(self, values: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(values, step=step)

    def finish(self) -> None:
        self.mlflow.end_run()


class Wandb:
    def __init__(self, folder: Path, project: str, config: dict[str, Any]) -> None:
        import wandb

        self.run = wandb.init(project=project, config=config, dir=str(folder))

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def finish(self) -> None:
        self.run.finish()


class Trackio:
    def __init__(self, folder: Path, project: str, config: dict[str, Any]) -> None:
        import trackio

        self.trackio = trackio
        trackio.init(project=project, config=config)

    def log(self, values: dict[str, float], step: int) -> None:
        self.trackio.log(values, step=step)

    def finish(self) -> None:
        self.trackio.finish()


KINDS = {"tensorboard": TensorBoard, "mlflow": MLflow, "wandb": Wandb, "trackio": Trackio}


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
        for tracker in self.trackers:
            tracker.log(values, step)

    def finish(self) -> None:
        for tracker in self.trackers:
            tracker.finish()
        self.trackers = []
