"""The Keras callbacks of a tf-mlm fit: the run's monitor, the progress bar, verified backups, Hub pushes."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from transformers.modeling_tf_utils import keras  # tf-keras: the Keras 2 API transformers' TF models use

from mlm_toolkit.metrics import LossLog
from mlm_toolkit.outputs import MANIFEST, require_free_space, snapshot_dir, write_manifest, write_text_atomically
from mlm_toolkit.run import Recorder, StepPlan

BACKUP = "backup"
PREVIOUS = "backup-previous"  # the backup before the newest, kept to fall back to if the newest is damaged
LOSS_LOG, IDENTITY, STREAM = "loss_log.json", "run_identity.json", "stream.json"  # beside the Keras backup


class RunMonitor(keras.callbacks.Callback):
    """Reports each step to the run's `Recorder`, evaluates as configured, and stops at --max-steps."""

    def __init__(
        self, recorder: Recorder, evaluate_fn, plan: StepPlan, tokens_per_step: int, eval_steps: int | None
    ) -> None:
        super().__init__()
        self.recorder, self.evaluate_fn, self.plan = recorder, evaluate_fn, plan
        self.tokens_per_step, self.eval_steps = tokens_per_step, eval_steps

    def on_train_batch_begin(self, batch, logs=None):
        self._tic = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        step_loss = float(logs["loss"])  # this step's own loss; reading it waits for the step: timing is real
        seconds = time.perf_counter() - self._tic
        step = int(self.model.optimizer.iterations.numpy())
        rate = float(self.model.optimizer.learning_rate(step))  # as the Trainer logs it: after the step
        self.recorder.train_tokens += self.tokens_per_step
        self.recorder.steps(step, [step_loss], [float(logs.get("grad_norm", math.nan))], [rate], seconds)
        if step >= self.plan.total_steps:
            self.model.stop_training = True
        elif self.eval_steps and step % self.eval_steps == 0:
            self.evaluation(step, f"step {step}")

    def on_epoch_end(self, epoch, logs=None):
        if self.params.get("verbose") == 1:  # the live bar has no newline yet: the log starts below it
            sys.stdout.write("\n")
        step = int(self.model.optimizer.iterations.numpy())
        record = self.evaluation(step, self.plan.epoch_at(step))
        if logs is not None:  # shown by the progress bar, after this callback
            logs.update({"eval_loss": record["eval_loss"], "perplexity": record["perplexity"]})

    def evaluation(self, step: int, when: str) -> dict[str, float]:
        """Evaluate these weights, unless they were just evaluated (--eval-steps at an epoch's end)."""
        evals = self.recorder.losses.evals
        if evals and evals[-1]["step"] == step:
            return evals[-1]
        return self.recorder.evaluation(step, self.evaluate_fn(), when)


class StepProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar with each step's own loss, its total the steps this epoch runs (`4/4`, not `4/12`)."""

    def __init__(self, total_steps: int) -> None:
        super().__init__(count_mode="steps", stateful_metrics=["loss", "grad_norm"])
        self.total_steps = total_steps

    def set_params(self, params):
        super().set_params(params)
        self.steps_per_epoch = params["steps"]

    def on_epoch_begin(self, epoch, logs=None):
        self.target = min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)
        super().on_epoch_begin(epoch, logs)


class VerifiedBackup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore, with the loss log, the run's identity and the stream's position beside each
    backup, a manifest written last (a damaged backup is named, not loaded), and the backup before kept as
    `backup-previous/` (hard links: Keras writes each backup into new files) to fall back to."""

    def __init__(
        self, folder: Path, losses: LossLog, identity: dict, save_freq, weight_bytes: int, stream_position=None
    ) -> None:
        # Kept after fit, until the final model and report are written: a failed final save can be resumed.
        super().__init__(str(folder), save_freq=save_freq, delete_checkpoint=False)
        self.folder, self.losses, self.identity, self.weight_bytes = folder, losses, identity, weight_bytes
        self.stream_position = stream_position

    def _backup(self, epoch, batch=0):
        require_free_space(self.folder, 3 * self.weight_bytes, "the Keras backup")  # weights, Adam's moments
        writes = self.model.distribute_strategy.extended.should_checkpoint  # the chief, in multi-worker
        if writes:
            if (self.folder / MANIFEST).is_file():  # a finished backup: the one to fall back to
                snapshot_dir(self.folder, self.folder.with_name(PREVIOUS))
            write_text_atomically(self.folder / LOSS_LOG, json.dumps(self.losses.to_dict()))
            write_text_atomically(self.folder / IDENTITY, json.dumps(self.identity))
            if self.stream_position is not None:
                steps = int(self.model.optimizer.iterations.numpy())
                write_text_atomically(self.folder / STREAM, json.dumps(self.stream_position(steps)))
        super()._backup(epoch, batch)
        if writes:  # other workers write into temporary folders of their own: not part of the backup
            write_manifest(self.folder, [*(self.folder / "chief").rglob("*"), *self.folder.glob("*.json")])


def epoch_pushes():
    """transformers' PushToHubCallback, pushing at each epoch's end only: `push_folder` pushes the end, once."""
    from transformers import PushToHubCallback

    class EpochPushes(PushToHubCallback):
        def on_train_end(self, logs=None):
            if self.last_job is not None:
                while not self.last_job.is_done:  # the last epoch's upload finishes before ours starts
                    time.sleep(1)

    return EpochPushes
