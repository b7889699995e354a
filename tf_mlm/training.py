"""`tf-mlm train`: masked-LM fine-tuning the Keras way, as the guide's TensorFlow tab, done properly.

Runbook (more in docs/scaling.md):

    tf-mlm train --model builtin:minilm --dataset builtin:chatterbot --output-dir runs/minilm-tf  # one CPU or GPU
    tf-mlm train --model distilbert/distilroberta-base --dataset eli5_category \\
        --push-to-hub --hub-model-id you/eli5-mlm  # the guide's recipe, online, pushed to the Hub as it trains
    tf-mlm train --mixed-precision mixed_float16 ...  # GPUs; mixed_bfloat16 on recent CPUs and TPUs
    tf-mlm train --strategy mirrored ...  # every GPU of one machine (global batch = per-replica batch x replicas)
    # several machines: the same command on each, TF_CONFIG naming the cluster and this worker's index
    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
               "task": {"type": "worker", "index": 0}}' tf-mlm train --strategy multi-worker ...
    tf-mlm train ... --resume auto  # continue an interrupted fit from its last backup

The run itself (setup, evaluate before, fit, evaluate after, save) is `mlm_toolkit.run.train`;
this module is what Keras does differently: `KerasBackend`, whose `fit` is compile() and fit() with callbacks.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf
from transformers import create_optimizer
from transformers.modeling_tf_utils import keras
from transformers.optimization_tf import WarmUp

import mlm_toolkit.run
from mlm_toolkit.config import RunConfig
from mlm_toolkit.convert import add_pytorch_weights, pytorch_would_differ
from mlm_toolkit.errors import RunError, UsageError
from mlm_toolkit.hub import hub_base_model
from mlm_toolkit.metrics import EvalScore, LossLog, Results, TokenWeightedMean
from mlm_toolkit.outputs import checkpoint_damage
from mlm_toolkit.run import Recorder, RunHooks, StepPlan, check_same_run, check_steps_left, tracked_config
from mlm_toolkit.streaming import BlockStream, StreamPosition
from mlm_toolkit.trackers import Trackers
from tf_mlm.callbacks import (
    BACKUP,
    IDENTITY,
    LOSS_LOG,
    PREVIOUS,
    STREAM,
    RunMonitor,
    StepProgbar,
    VerifiedBackup,
    epoch_pushes,
)
from tf_mlm.compat import (
    autograph_where_it_branches,
    create_slots,
    generator_stable_dropout,
    load_masked_lm,
    make_idle_generators,
    native_noise_filtered,
    resumable_dropout,
    speed_workarounds,
)
from tf_mlm.heads import MaskedLMTrainer, masked_rows, masked_token_loss_sum, sparse_head_differs
from tf_mlm.inputs import run_batches, stream_batches
from tf_mlm.options import TFOptions
from tf_mlm.strategy import device_names, make_strategy, worker_place

if TYPE_CHECKING:
    from mlm_toolkit.config import EvalConfig
    from mlm_toolkit.evaluation import ModelEvaluation

log = logging.getLogger("tf_mlm")
HUB_CLONE = "hub"  # PushToHubCallback's clone of the Hub repository, inside --output-dir


def train(
    run: RunConfig,
    options: TFOptions | None = None,
    callbacks: list | None = None,
    hooks: list[RunHooks] | None = None,
) -> Results:
    """Fine-tune with compile() and fit(); `callbacks`: extra Keras callbacks (tests interrupt a fit so)."""
    return mlm_toolkit.run.train(run, KerasBackend(options or TFOptions(), callbacks), hooks)


def make_optimizer(train_cfg, total_steps: int, warmup_steps: int):
    """AdamWeightDecay (no decay on LayerNorm and biases, global-norm clipping), with the Trainer's schedules."""
    name, rate = train_cfg.lr_scheduler, train_cfg.learning_rate
    warmup = 0 if name == "constant" else warmup_steps  # "constant" ignores warm-up, as in PyTorch
    # power 0 makes the polynomial decay flat: a constant rate after the warm-up.
    # Clipped after the replicas' gradients are summed, as the Trainer clips after DDP's all-reduce.
    decay = {"weight_decay_rate": train_cfg.weight_decay, "power": 1.0 if name in ("linear", "polynomial") else 0.0}
    if name == "polynomial":  # get_scheduler's: power 1 down to an end rate of 1e-7, not 0
        decay["min_lr_ratio"] = 1e-7 / rate
    adam = dict(adam_beta1=train_cfg.adam_beta1, adam_beta2=train_cfg.adam_beta2, adam_epsilon=train_cfg.adam_epsilon)
    optimizer, _ = create_optimizer(
        rate, total_steps, warmup, adam_global_clipnorm=train_cfg.max_grad_norm or None, **decay, **adam
    )
    if name in ("cosine", "cosine_with_restarts"):  # half a cosine from the peak to 0 after the warm-up (1 cycle)
        cosine = keras.optimizers.schedules.CosineDecay(rate, decay_steps=max(total_steps - warmup, 1))
        optimizer.learning_rate = WarmUp(rate, cosine, warmup) if warmup else cosine
    return optimizer


def compile_trainee(model, run: RunConfig, options: TFOptions, plan: StepPlan, sparse=True, workarounds=True):
    """The model wrapped in our train step and compiled the guide's way: an optimizer and no loss."""
    rows = None
    if options.jit_compile:  # XLA needs a static number of gathered rows
        rows = masked_rows(run.train.per_device_batch_size * run.data.block_size, run.data.mlm_probability)
    trainee = MaskedLMTrainer(model, sparse=sparse, rows=rows, autograph=not workarounds)
    optimizer = make_optimizer(run.train, plan.total_steps, plan.warmup_steps)
    trainee.compile(optimizer=optimizer, jit_compile=options.jit_compile)
    if workarounds:
        create_slots(optimizer, model.trainable_variables)
    return trainee


class KerasBackend:
    """What Keras does in `mlm_toolkit.run.train`: a tf.distribute strategy, compile() and fit()."""

    framework, short = "tensorflow", "tf"
    is_main = True  # every worker of a multi-worker run writes its own --output-dir

    def __init__(self, options: TFOptions, callbacks: list | None = None) -> None:
        self.options, self.extra_callbacks, self.pushes = options, list(callbacks or []), None
        self.trackers = Trackers((), Path("."), "tf-mlm", {})  # none until the run's identity is known

    # ---- setup
    def start(self, run: RunConfig) -> None:
        self.run = run
        if run.train.lr_scheduler == "inverse_sqrt":
            raise UsageError("inverse_sqrt is PyTorch's only (pt-mlm); tf-mlm has the others", "--lr-scheduler")
        if self.options.use_cpu:  # before TensorFlow touches a device
            tf.config.set_visible_devices([], "GPU")
        if self.options.strategy != "multi-worker":  # (its collectives start with the strategy, below)
            with native_noise_filtered():  # the CUDA probe of a machine without a GPU
                tf.config.list_logical_devices("GPU")
        # First: a multi-worker strategy must exist before any other TensorFlow work.
        self.strategy = make_strategy(self.options.strategy, self.options.worker_timeout)
        self.num_processes, self.device = self.strategy.num_replicas_in_sync, device_names(self.strategy)
        if run.hub.push_to_hub:
            from transformers.utils import is_torch_available

            if not is_torch_available():
                how = "import tf_mlm with USE_TORCH=AUTO in the environment (the tf-mlm CLI does this)"
                raise RunError(f"--push-to-hub: transformers' PushToHubCallback needs torch importable; {how}")

    def check_model(self, config) -> None:
        from transformers import TFAutoModelForMaskedLM

        if type(config) not in TFAutoModelForMaskedLM._model_mapping:
            reason = f"transformers has no TensorFlow {config.model_type} model"
            raise UsageError(f"{reason}; train it with pt-mlm (the same flags)", "--model")
        family = TFAutoModelForMaskedLM._model_mapping[type(config)]
        if "labels" not in inspect.signature(family.call).parameters:  # TF XLM and FlauBERT
            reason = f"TensorFlow's {family.__name__} takes no labels, so prepare_tf_dataset drops them"
            raise UsageError(f"{reason}; train it with pt-mlm (the same flags)", "--model")
        if self.options.pt_weights and (reason := pytorch_would_differ(config)):  # now, not after training
            how = "train it with pt-mlm (the same flags), or give --no-pt-weights for TensorFlow weights alone"
            raise UsageError(f"{reason}; {how}", "--model")

    def save_fresh(self, config, folder: Path, seed: int) -> None:
        from transformers import TFAutoModelForMaskedLM

        keras.utils.set_random_seed(seed)
        model = TFAutoModelForMaskedLM.from_config(config)
        model(model.dummy_inputs)  # Keras makes the weights on the first call
        model.save_pretrained(folder)

    def load(self, resolved, tokenizer, data) -> list[str]:
        run, options = self.run, self.options
        keras.utils.set_random_seed(run.train.seed)  # Python, NumPy and TF: a fresh head, the dropout seeds
        global_batch = run.train.per_device_batch_size * self.num_processes
        batches = None  # a stream: trained by --max-steps
        if not run.data.streaming:
            batches = len(data.train_blocks) // global_batch  # whole batches only: static shapes for XLA
            if batches == 0:
                more = f"a global batch of {global_batch} is more than the {len(data.train_blocks)} train blocks"
                raise UsageError(more, "--per-device-batch-size")
        self.plan = StepPlan.make(batches, 1, global_batch, run.train)
        # The policy must be set before the model is built: layers read it when created.
        policy = "float32" if options.mixed_precision == "no" else options.mixed_precision
        keras.mixed_precision.set_global_policy(policy)
        with self.strategy.scope(), resumable_dropout() as dropout_states:
            model, info = load_masked_lm(resolved, output_loading_info=True)
            generator_stable_dropout(model)
            workarounds = speed_workarounds(options.workarounds)
            if workarounds:
                autograph_where_it_branches(model)
            self.sparse = options.sparse_head and sparse_head_works(model, data.eval_inputs)
            self.trainee = compile_trainee(model, run, options, self.plan, self.sparse, workarounds)
            self.trainee(tf.zeros((1, run.data.block_size), tf.int32))  # built before fit, as BackupAndRestore needs
            make_idle_generators(model)
            self.trainee.dropout_states = dropout_states  # tracked: in each backup
        self.model, self.tokenizer, self.model_config = model, tokenizer, model.config
        self.weight_bytes = sum(int(np.prod(w.shape)) * w.dtype.size for w in model.weights)
        self.saved_bytes = 2 * self.weight_bytes  # Keras weights, and PyTorch's beside them
        self.data, self.stream = data, None
        if run.data.streaming:
            worker, workers = worker_place(self.strategy)
            self.stream = BlockStream(lambda: data.open_train(worker, workers), tokenizer, run.data)
        self.evaluate = make_evaluator(model, data.eval_inputs, run.train.eval_batch, self.sparse, workarounds)
        return info["missing_keys"]

    def resume(self, out: Path, identity: dict) -> LossLog:
        # The trackers get the same tags and steps as pt-mlm's (train/loss, eval/loss, ...), step 0 included.
        self.trackers = Trackers(self.run.train.report_to, out / "runs", "tf-mlm", tracked_config(identity, self.plan))
        resume = self.run.train.resume
        self.backup = out / BACKUP if resume in (None, "auto") else Path(resume).expanduser()
        self.identity = identity
        if not resume:
            return LossLog()
        where = f"the Keras backup in {self.backup}"
        if not (self.backup.is_dir() and any(self.backup.iterdir())):
            raise UsageError(f"no Keras backup in {str(self.backup)!r} to resume from", "--resume")
        if damage := checkpoint_damage(self.backup):
            self.fall_back_to_previous(damage, where, auto=resume == "auto")
        if (self.backup / IDENTITY).is_file():
            check_same_run(json.loads((self.backup / IDENTITY).read_text()), identity, where)
        losses = LossLog()
        if (self.backup / LOSS_LOG).is_file():
            losses = LossLog.from_dict(json.loads((self.backup / LOSS_LOG).read_text()))
        check_steps_left(self.run.train.max_steps, losses.steps[-1] if losses.steps else 0, where)
        if self.stream is not None and (self.backup / STREAM).is_file():
            self.stream.position = StreamPosition.from_dict(json.loads((self.backup / STREAM).read_text()))
        return losses

    def fall_back_to_previous(self, damage: str, where: str, auto: bool) -> None:
        """Put the backup before the damaged newest one in its place, or refuse naming what is damaged."""
        previous = self.backup.with_name(PREVIOUS)
        previous_damage = checkpoint_damage(previous) if previous.is_dir() else "there is none"
        if not auto or previous_damage:
            older = f"; the previous backup: {previous_damage}" if auto else ""
            advice = "start again with --overwrite-output-dir"
            raise UsageError(f"{where} is damaged: {damage}{older}; {advice}", "--resume")
        log.warning("resuming from the previous Keras backup: the newest is damaged (%s)", damage)
        shutil.rmtree(self.backup)
        os.replace(previous, self.backup)

    def settings(self) -> dict[str, object]:
        replicas = f"{self.run.train.per_device_batch_size} per replica x {self.num_processes} replicas"
        strategy = {"_DefaultDistributionStrategy": "no", "MirroredStrategy": "mirrored"}
        kind = strategy.get(type(self.strategy).__name__, "multi-worker")
        workers = worker_place(self.strategy)[1]
        distributed = kind + (f" over {workers} workers" if workers > 1 else "")
        return {
            "distributed": distributed,
            "batch": replicas,
            "XLA": self.options.jit_compile,
            "sparse head": self.trainee.sparse,
        }

    def track(self, values: dict[str, float], step: int) -> None:
        self.trackers.log(values, step)

    def barrier(self) -> None:
        pass  # fit() synchronises the workers itself

    # ---- fit
    def fit(self, recorder: Recorder, out: Path) -> int:
        run, plan = self.run, self.plan
        train_set, position_after = self.train_set_from(len(recorder.losses.steps))
        tokens_per_step = plan.global_batch * run.data.block_size
        callbacks = [RunMonitor(recorder, self.evaluate, plan, tokens_per_step, run.train.eval_steps)]
        if run.train.checkpointing_steps != "none":
            save_freq = run.train.checkpoint_every or "epoch"
            state = (recorder.losses, self.identity, save_freq, self.weight_bytes, position_after)
            callbacks.append(VerifiedBackup(self.backup, *state))
            self.backup.mkdir(parents=True, exist_ok=True)
        if run.hub.push_to_hub and run.hub.hub_strategy == "every_save":
            every = run.train.checkpoint_every
            callbacks.append(
                epoch_pushes()(
                    output_dir=str(out / HUB_CLONE),
                    save_strategy="steps" if every else "epoch",
                    save_steps=every,
                    tokenizer=self.tokenizer,
                    hub_model_id=run.hub.hub_model_id,
                    hub_token=run.hub.hub_token,
                    # model-card data for the card the callback writes
                    finetuned_from=hub_base_model(run.model.model),
                    tasks="fill-mask",
                    dataset=run.data.dataset,
                    language="en",
                )
            )
        live_bar = sys.stdout.isatty()  # in a log, Keras prints a line per epoch and the recorder one per
        recorder.log_every = 0 if live_bar else self.options.log_every  # --log-every steps
        self.trainee.fit(
            train_set,
            epochs=plan.num_epochs,
            steps_per_epoch=plan.steps_per_epoch,
            callbacks=[*callbacks, *self.extra_callbacks, StepProgbar(plan.total_steps)],
            verbose=1 if live_bar else 2,
        )
        steps = int(self.trainee.optimizer.iterations.numpy())
        if recorder.losses.evals[-1]["step"] != steps:  # stopped mid-epoch by --max-steps: the final weights
            recorder.evaluation(steps, self.evaluate(), f"step {steps}")
        return steps

    def train_set_from(self, steps_done: int):
        """(what fit() reads, position_after(steps) for the backups: None unless streaming)."""
        batch, config, seed = self.plan.global_batch, self.run.data, self.run.train.seed
        if self.stream is None:
            blocks, total = self.data.train_blocks.dataset, self.plan.total_steps
            return run_batches(self.model, blocks, self.tokenizer, config, batch, seed, steps_done, total), None
        return stream_batches(self.stream, self.tokenizer, config, batch, seed, steps_done)

    # ---- save
    def save(self, folder: Path) -> None:
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        if self.options.pt_weights:
            add_pytorch_weights(folder, self.model)

    def finish(self, out: Path, completed: bool) -> None:
        keras.mixed_precision.set_global_policy("float32")
        self.trackers.finish()
        if completed:  # the run is complete: nothing left to resume
            shutil.rmtree(out / BACKUP, ignore_errors=True)
            shutil.rmtree(out / PREVIOUS, ignore_errors=True)


def sparse_head_works(model, eval_inputs: dict[str, np.ndarray]) -> bool:
    """Whether the head on the masked rows alone gives the model's own logits (said once where it does not)."""
    reason = sparse_head_differs(model, {key: value[:2] for key, value in eval_inputs.items()})
    if reason:
        log.warning("--sparse-head: not for %s, %s; the full head runs", model.config.model_type, reason)
    return reason is None


EAGER_EVALUATION_SECONDS = 10.0  # eager passes until they have taken this long in all (docs/compat.md)


def make_evaluator(model, eval_inputs: dict[str, np.ndarray], batch_size: int, sparse=True, eager_first=True):
    """A function giving the token-weighted mean cross-entropy over the frozen eval set, in float32. Passes run
    eagerly (`eager_first`) until they have taken EAGER_EVALUATION_SECONDS in all, then share one traced graph:
    tracing costs seconds, which only an eval set evaluated long enough, or often enough, pays back."""

    def eager(ids, labels, mask):
        return masked_token_loss_sum(model, ids, labels, False, sparse=sparse, attention_mask=mask)

    traced = tf.function(eager, reduce_retracing=True)
    eager_seconds = 0.0 if eager_first else math.inf

    def evaluate() -> EvalScore:
        nonlocal eager_seconds
        runs_eagerly, started = eager_seconds < EAGER_EVALUATION_SECONDS, time.perf_counter()
        batch_sums = eager if runs_eagerly else traced
        mean = TokenWeightedMean()
        for start in range(0, len(eval_inputs["input_ids"]), batch_size):
            batch = {key: value[start : start + batch_size] for key, value in eval_inputs.items()}
            total, count, right = batch_sums(batch["input_ids"], batch["labels"], batch.get("attention_mask"))
            mean.add(float(total) / max(float(count), 1.0), int(count), int(right))
        if runs_eagerly:
            eager_seconds += time.perf_counter() - started
        return mean.score

    return evaluate


def score(resolved, tokenizer, data, batch_size: int) -> EvalScore:
    """The eval loss of the model `resolved` names on `data`'s frozen held-out inputs."""
    model = load_masked_lm(resolved)
    return make_evaluator(model, data.eval_inputs, batch_size, sparse_head_works(model, data.eval_inputs))()


def evaluate(config: EvalConfig) -> ModelEvaluation:
    """The perplexity of a saved model (folder, built-in or cached Hub id) on the held-out blocks."""
    from mlm_toolkit.evaluation import evaluate

    return evaluate(config, "tensorflow", score)
