"""`tf-mlm train`: masked-LM fine-tuning the Keras way, as the guide's TensorFlow tab, done properly.

Runbook:

    # one CPU or GPU (XLA on for speed; the guide runs without it)
    tf-mlm train --model builtin:minilm --dataset builtin:chatterbot --output-dir runs/minilm-tf --jit-compile
    # the guide's recipe, online, pushed to the Hub as it trains
    tf-mlm train --model distilbert/distilroberta-base --dataset eli5_category --push-to-hub --hub-model-id you/eli5-mlm
    # mixed precision: mixed_float16 on GPUs, mixed_bfloat16 on recent CPUs and TPUs
    tf-mlm train --mixed-precision mixed_float16 ...
    # every GPU of one machine (global batch = per-replica batch x replicas)
    tf-mlm train --strategy mirrored ...
    # several machines: the same command on each, TF_CONFIG naming the cluster and this worker's index
    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}' \
        tf-mlm train --strategy multi-worker ...
    # continue an interrupted fit from its last backup
    tf-mlm train ... --resume auto

`train` reads top to bottom: setup, evaluate before, compile and fit, evaluate after, save.
"""

from __future__ import annotations

from tf_mlm.environment import prepare

prepare()  # before TensorFlow and transformers are imported  # noqa: E402

import json
import logging
import math
import os
import shutil
import faulthandler
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import tensorflow as tf
from transformers import TFAutoModelForMaskedLM, create_optimizer
from transformers.modeling_tf_utils import keras  # tf-keras: the Keras 2 API transformers' TF models use

from shared.blocks import masking_collator, prepare_data
from tf_mlm.compat import patch_safetensors_loading
from tf_mlm.heads import MaskedLMTrainer, encoder_and_head, masked_rows, masked_token_loss_sum
from shared.config import RunConfig
from tf_mlm.options import TFOptions, check_tf_config
from shared.errors import RunError, UsageError
from shared.metrics import LossLog, TokenWeightedMean
from shared.models import load_checked, load_weights, report_fresh_weights, resolve_model
from shared.export import add_weights_for_other_framework
from shared.identity import check_same_run, check_steps_left, completed_results, run_identity
from shared.outputs import (checkpoint_damage, check_output_dir, claimed_output_dir, require_free_space,
                            save_model_atomically, write_manifest)
from shared.publish import check_push_possible, push_folder
from shared.reports import build_results, hub_base_model, write_run_report

log = logging.getLogger("tf_mlm")
patch_safetensors_loading()
BACKUP = "backup"
LOSS_LOG, IDENTITY = "loss_log.json", "run_identity.json"  # beside the Keras backup
HUB_CLONE = "hub"  # PushToHubCallback's clone of the Hub repository, inside --output-dir


def make_strategy(name: str, worker_timeout: int = 300) -> tf.distribute.Strategy:
    if name == "auto":
        name = "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    check_tf_config(os.environ.get("TF_CONFIG"))
    # TensorFlow waits for every worker of TF_CONFIG without a limit, inside C++ holding the GIL (seen with
    # TF 2.21: a missing worker hangs the others, deaf to SIGTERM), so no Python thread or signal handler
    # can end the wait. faulthandler's watchdog thread needs no GIL: it exits with 1 after the timeout,
    # its traceback going to a file; a small process says why on the console just before.
    cluster = json.loads(os.environ["TF_CONFIG"])["cluster"]
    message = (f"Error: TF_CONFIG: not every worker of {cluster} answered within {worker_timeout} s "
               "(--worker-timeout); start the same command on each of them")
    crash_log = open(Path(tempfile.gettempdir()) / f"mlm-toolkit-workers-{os.getpid()}.log", "w")  # noqa: SIM115
    faulthandler.dump_traceback_later(worker_timeout + 1, exit=True, file=crash_log)
    announcer = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(float(sys.argv[1])); "
                                  "print(sys.argv[2], file=sys.stderr)", str(worker_timeout), message])
    try:
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=worker_timeout)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    finally:
        faulthandler.cancel_dump_traceback_later()
        announcer.kill()
        crash_log.close()
        Path(crash_log.name).unlink(missing_ok=True)


def device_names(strategy: tf.distribute.Strategy) -> str:
    try:
        return ", ".join(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy runs on TF's default device
        gpus = tf.config.list_logical_devices("GPU")
        return gpus[0].name if gpus else "/device:CPU:0"


def make_optimizer(train_cfg, total_steps: int):
    """AdamWeightDecay (no decay on LayerNorm and biases) with the configured schedule."""
    kwargs = dict(init_lr=train_cfg.learning_rate, num_train_steps=total_steps,
                  num_warmup_steps=train_cfg.warmup_steps, weight_decay_rate=train_cfg.weight_decay)
    if train_cfg.lr_scheduler == "cosine":
        raise UsageError("cosine is not offered on the Keras path; use linear or constant", "--lr-scheduler")
    # power 0 makes the polynomial decay flat: a constant rate after the warm-up.
    power = 1.0 if train_cfg.lr_scheduler == "linear" else 0.0
    # Clipped after the replicas' gradients are summed, as the Trainer clips after DDP's all-reduce.
    optimizer, _ = create_optimizer(**kwargs, power=power, adam_global_clipnorm=train_cfg.max_grad_norm or None)
    return optimizer


def compile_trainee(model, run: RunConfig, options: "TFOptions", total_steps: int) -> MaskedLMTrainer:
    """The model wrapped in our train step and compiled the guide's way: an optimizer and no loss."""
    rows = None
    if options.jit_compile:  # XLA needs a static number of gathered rows
        rows = masked_rows(run.train.per_device_batch_size * run.data.block_size, run.data.mlm_probability)
    trainee = MaskedLMTrainer(model, sparse=options.sparse_head and encoder_and_head(model) is not None, rows=rows)
    trainee.compile(optimizer=make_optimizer(run.train, total_steps), jit_compile=options.jit_compile)
    return trainee


def make_evaluator(model, eval_inputs: dict[str, np.ndarray], batch_size: int):
    """A function giving the token-weighted mean cross-entropy over the frozen eval set, computed
    in float32 whatever the precision policy. The graph is traced once per run, not per call."""
    batch_sums = tf.function(lambda ids, labels: masked_token_loss_sum(model, ids, labels, training=False),
                             reduce_retracing=True)

    def evaluate() -> float:
        mean = TokenWeightedMean()
        for start in range(0, len(eval_inputs["input_ids"]), batch_size):
            batch = slice(start, start + batch_size)
            total, count = batch_sums(eval_inputs["input_ids"][batch], eval_inputs["labels"][batch])
            mean.add(float(total) / max(float(count), 1.0), int(count))
        return mean.mean

    return evaluate


class RunMonitor(keras.callbacks.Callback):
    """Per-step loss, timing, evaluation each epoch, and stopping at --max-steps."""

    def __init__(self, losses: LossLog, evaluate_fn, max_steps: int) -> None:
        super().__init__()
        self.losses, self.evaluate_fn, self.max_steps = losses, evaluate_fn, max_steps
        self.seconds, self.batches = 0.0, 0
        self.first_step_time: float | None = None  # wall clock, for time-to-first-step

    def on_epoch_begin(self, epoch, logs=None):
        self._tic = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self._step_tic = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        step_loss = float(logs["loss"])  # this step's own loss; reading it waits for the step: the timing is real
        self.batches += 1
        self.first_step_time = self.first_step_time or time.time()
        self.losses.log_step(int(self.model.optimizer.iterations.numpy()), step_loss, time.perf_counter() - self._step_tic,
                             float(logs.get("grad_norm", math.nan)))
        if self.model.optimizer.iterations.numpy() >= self.max_steps:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.seconds += time.perf_counter() - self._tic
        record = self.losses.log_eval(int(self.model.optimizer.iterations.numpy()), self.evaluate_fn())
        if logs is not None:
            logs.update({"eval_loss": record["eval_loss"], "perplexity": record["perplexity"]})
        log.info("epoch %d: eval loss %.4f, perplexity %.2f", epoch + 1, record["eval_loss"], record["perplexity"])


class VerifiedBackup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore, with the loss log saved beside each backup (a resumed run keeps its whole
    curve) and a manifest of sizes and hashes written last (a damaged backup is named, not loaded)."""

    def __init__(self, folder: Path, losses: LossLog, identity: dict, save_freq, weight_bytes: int) -> None:
        # Kept after fit: removed only once the final model and report are written, so a failed final
        # save can be resumed.
        super().__init__(str(folder), save_freq=save_freq, delete_checkpoint=False)
        self.folder, self.losses, self.identity, self.weight_bytes = folder, losses, identity, weight_bytes

    def _backup(self, epoch, batch=0):
        require_free_space(self.folder, 3 * self.weight_bytes, "the Keras backup")  # weights, Adam's moments
        writes = self.model.distribute_strategy.extended.should_checkpoint  # the chief, in multi-worker
        if writes:
            (self.folder / LOSS_LOG).write_text(json.dumps(self.losses.to_dict()))
            (self.folder / IDENTITY).write_text(json.dumps(self.identity))
        super()._backup(epoch, batch)
        if writes:  # other workers write into temporary folders of their own: not part of the backup
            write_manifest(self.folder, [*(self.folder / "chief").rglob("*"), *self.folder.glob("*.json")])


def epoch_pushes():
    """transformers' PushToHubCallback, pushing at each epoch's end only. The end of training is pushed
    once, by `push_folder`, with the whole output folder (both frameworks' weights, our model card and
    metrics); the callback's own final push would upload the same model a second time."""
    from transformers import PushToHubCallback

    class EpochPushes(PushToHubCallback):
        def on_train_end(self, logs=None):
            if self.last_job is not None:
                while not self.last_job.is_done:  # the last epoch's upload finishes before ours starts
                    time.sleep(1)

    return EpochPushes


def resume_state(out: Path, resume: str | None) -> Path:
    """The BackupAndRestore folder; with --resume it must hold a backup to continue from."""
    backup = out / BACKUP if resume in (None, "auto") else Path(resume).expanduser()
    if resume and not (backup.is_dir() and any(backup.iterdir())):
        raise UsageError(f"no Keras backup in {str(backup)!r} to resume from", "--resume")
    return backup


def train(run: RunConfig, options: TFOptions | None = None, callbacks: list | None = None) -> dict:
    """Fine-tune with compile() and fit(); returns the results written to all_results.json.

    `callbacks` are extra Keras callbacks (tests use one to interrupt a fit).
    """
    options = options or TFOptions()
    data_cfg, train_cfg = run.data, run.train
    if train_cfg.gradient_accumulation_steps != 1:
        raise UsageError("the Keras path does not accumulate gradients; raise --per-device-batch-size", "--gradient-accumulation-steps")

    # ---- setup: the strategy first (multi-worker must exist before other TF work), then fail-fast checks
    strategy = make_strategy(options.strategy, options.worker_timeout)
    resolved = resolve_model(run.model.model)
    _, tokenizer = load_checked(resolved, data_cfg.block_size)
    if run.hub.push_to_hub:
        check_push_possible(run.hub)
        from transformers.utils import is_torch_available

        if not is_torch_available():
            raise RunError("--push-to-hub: transformers' PushToHubCallback needs torch importable; "
                           "import tf_mlm with USE_TORCH=AUTO in the environment (the tf-mlm CLI does this)")
    finished = completed_results(check_output_dir(train_cfg)) if train_cfg.resume else None
    if finished:  # a finished run is never rewritten
        log.warning("%s holds a complete run (%d optimizer steps); nothing to resume", train_cfg.output_dir,
                    finished["optimizer_steps"])
        return finished
    with claimed_output_dir(run, resolved.location) as out:
        return fit_and_save(run, options, strategy, resolved, tokenizer, out, callbacks)


def fit_and_save(run: RunConfig, options: TFOptions, strategy, resolved, tokenizer, out: Path, callbacks) -> dict:
    """The run itself, in a claimed output folder: data, model, evaluate before, compile and fit, save, report."""
    data_cfg, train_cfg = run.data, run.train
    backup = resume_state(out, train_cfg.resume)
    keras.utils.set_random_seed(train_cfg.seed)  # Python, NumPy (the collator's masks) and TF
    data = prepare_data(data_cfg, tokenizer, train_cfg.seed)
    replicas = strategy.num_replicas_in_sync
    global_batch = train_cfg.per_device_batch_size * replicas
    steps_per_epoch = len(data.train_blocks) // global_batch  # whole batches only: static shapes for XLA
    if steps_per_epoch == 0:
        raise UsageError(f"a global batch of {global_batch} is more than the {len(data.train_blocks)} train blocks", "--per-device-batch-size")
    total_steps = train_cfg.max_steps or math.ceil(train_cfg.num_epochs * steps_per_epoch)
    num_epochs = math.ceil(total_steps / steps_per_epoch)

    # The policy must be set before the model is built: layers read it when created.
    keras.mixed_precision.set_global_policy("float32" if options.mixed_precision == "no" else options.mixed_precision)
    try:
        with strategy.scope():
            model, info = load_weights(lambda: TFAutoModelForMaskedLM.from_pretrained(
                resolved.location, output_loading_info=True, **resolved.load_kwargs()), resolved.name)
            trainee = compile_trainee(model, run, options, total_steps)
        report_fresh_weights(info["missing_keys"], resolved.name)
        collator = masking_collator(tokenizer, data_cfg.mlm_probability, return_tensors="np")
        import datasets

        train_set = model.prepare_tf_dataset(
            datasets.Dataset.from_dict({"input_ids": data.train_blocks}),
            batch_size=global_batch, shuffle=True, collate_fn=collator, drop_remainder=True,
        )
        log.info(
            "derived: %d train blocks, %d eval blocks, %d steps/epoch, %d optimizer steps, global batch %d "
            "(%d per replica x %d replicas), %d tokens/step, precision %s, XLA %s, sparse head %s, device %s",
            len(data.train_blocks), data.eval_blocks, steps_per_epoch, total_steps, global_batch,
            train_cfg.per_device_batch_size, replicas, global_batch * data_cfg.block_size,
            options.mixed_precision, options.jit_compile, trainee.sparse, device_names(strategy),
        )

        # ---- evaluate before training (a resumed run keeps the figure of its true start)
        state_file, identity_file = backup / LOSS_LOG, backup / IDENTITY
        identity = run_identity(run, resolved.name, model.config, data.texts, replicas)
        losses = LossLog()
        if train_cfg.resume:
            if damage := checkpoint_damage(backup):
                raise UsageError(f"the Keras backup in {str(backup)!r} is damaged: {damage}; Keras keeps no older "
                                 "backup to fall back to: start again with --overwrite-output-dir", "--resume")
            if identity_file.is_file():
                check_same_run(json.loads(identity_file.read_text()), identity, f"the Keras backup in {backup}")
            if state_file.is_file():
                losses = LossLog.from_dict(json.loads(state_file.read_text()))
            check_steps_left(train_cfg.max_steps, losses.steps[-1] if losses.steps else 0, f"the Keras backup in {backup}")
        evaluate_now = make_evaluator(model, data.eval_inputs, train_cfg.eval_batch)
        if not losses.evals:
            before = losses.log_eval(0, evaluate_now())
            log.info("before training: eval loss %.4f, perplexity %.2f", before["eval_loss"], before["perplexity"])

        # ---- fit, with callbacks for progress, backups, logs and the Hub
        backup.mkdir(parents=True, exist_ok=True)
        weight_bytes = sum(int(np.prod(w.shape)) * w.dtype.size for w in model.weights)
        monitor = RunMonitor(losses, evaluate_now, total_steps)
        keras_callbacks = [monitor, VerifiedBackup(backup, losses, identity, train_cfg.checkpointing_steps or "epoch",
                                                   weight_bytes)]
        if train_cfg.report_to == "tensorboard":
            keras_callbacks.append(keras.callbacks.TensorBoard(log_dir=str(out / "runs")))
        if run.hub.push_to_hub:
            keras_callbacks.append(epoch_pushes()(
                output_dir=str(out / HUB_CLONE), tokenizer=tokenizer, hub_model_id=run.hub.hub_model_id,
                # model-card data for the card the callback writes
                finetuned_from=hub_base_model(resolved.name), tasks="fill-mask", dataset=data_cfg.dataset, language="en",
            ))
        trainee.fit(train_set, epochs=num_epochs, steps_per_epoch=steps_per_epoch, callbacks=keras_callbacks + list(callbacks or []),
                  verbose=1 if sys.stdout.isatty() else 2)
        if losses.evals[-1]["step"] != int(trainee.optimizer.iterations.numpy()):
            monitor.on_epoch_end(num_epochs - 1)  # stopped mid-epoch by --max-steps: evaluate the final weights
    finally:
        keras.mixed_precision.set_global_policy("float32")

    # ---- report and save: Keras weights, then PyTorch weights beside them
    steps_done = int(trainee.optimizer.iterations.numpy())
    results = build_results(
        "tensorflow", {**run.to_dict(), "tf": asdict(options)}, data, resolved.name, tokenizer.mask_token,
        info["missing_keys"], losses,
        optimizer_steps=steps_done, steps_per_epoch=steps_per_epoch, global_batch=global_batch, precision=options.mixed_precision,
        device=device_names(strategy), num_processes=replicas,
        train_tokens=monitor.batches * global_batch * data_cfg.block_size, train_seconds=monitor.seconds,
        first_step_time=monitor.first_step_time,
    )
    def save(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        add_weights_for_other_framework(folder, have="tf")
    save_model_atomically(out, save, 2 * weight_bytes)
    write_run_report(out, results, losses, "tf")
    shutil.rmtree(backup, ignore_errors=True)  # the run is complete: nothing left to resume
    after = results["after"]
    log.info("after training: eval loss %.4f, perplexity %.2f; saved to %s", after["eval_loss"], after["perplexity"], out)
    if run.hub.push_to_hub:
        push_folder(out, run.hub, f"tf-mlm: perplexity {after['perplexity']:.2f}")
    return results
