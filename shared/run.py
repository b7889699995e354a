"""One training run, the same for both frameworks; a framework supplies a `Backend` with what differs.

    setup     resolve the model, check the Hub, claim --output-dir, data, model, step plan, resume
    fit       the backend's loop (PyTorch) or fit() (Keras), reporting each step to a `Recorder`
    evaluate  before training and after each epoch, on the frozen held-out masks
    save      final model into staging, then the report (all_results.json last), then the Hub

A checkpoint records the run's identity (`run_identity`); `--resume` refuses one that differs, naming the setting.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from mlm_toolkit.config import RunConfig, TrainConfig
from mlm_toolkit.config_files import write_run_config
from mlm_toolkit.data import MLMData, prepare_data
from mlm_toolkit.errors import RunError, UsageError, WrongType
from mlm_toolkit.hub import Pushes, check_push_possible
from mlm_toolkit.metrics import EvalScore, LossLog, Results, completed_results
from mlm_toolkit.model_card import write_run_report
from mlm_toolkit.models import ResolvedModel, fresh_model, load_checked, report_fresh_weights, resolve_model
from mlm_toolkit.outputs import (
    cache_root,
    check_output_dir,
    checkpoint_damage,
    claimed_output_dir,
    recover_interrupted_overwrite,
    save_model_atomically,
)
from mlm_toolkit.values import flag_of

# Settings that decide what the model learns or how it is measured, by their config field (and so their
# flag); a change of the data itself is caught by the fingerprint of the texts.
DATA_FIELDS = tuple(
    "dataset_config train_split max_samples test_size max_eval_samples block_size line_by_line mlm_probability "
    "whole_word_masking streaming".split()
)
TRAIN_FIELDS = tuple(
    "seed per_device_batch_size learning_rate weight_decay lr_scheduler warmup_steps warmup_ratio "
    "max_grad_norm adam_beta1 adam_beta2 adam_epsilon".split()
)


def model_shape(config) -> str:
    """What a checkpoint's tensors depend on: family, vocabulary, width and depth of the model."""
    return (
        f"{config.model_type}, vocabulary {config.vocab_size}, hidden {config.hidden_size}, "
        f"{config.num_hidden_layers} layers"
    )


def run_identity(
    run: RunConfig, model_name: str, model_config, data, num_processes: int, options: Any = None
) -> dict[str, Any]:
    """The settings a resumed run must share, the framework's `identity_fields` of `options` included."""
    identity: dict[str, Any] = {
        "model": model_name,
        "model_shape": model_shape(model_config),
        "num_processes": num_processes,
        "text_column": data.text_column,
    }
    identity.update({name: getattr(run.data, name) for name in DATA_FIELDS})
    identity.update({name: getattr(run.train, name) for name in TRAIN_FIELDS})
    identity.update({name: getattr(options, name) for name in getattr(options, "identity_fields", ())})
    # Last, so that a setting that changes the data (the seed's split, --max-samples) is named itself.
    identity["dataset"] = data.fingerprint
    return identity


def check_same_run(saved: dict[str, Any], now: dict[str, Any], where: str) -> None:
    """Refuse to resume `where` (a checkpoint or backup) when any setting defining the run differs."""
    for key, value in now.items():
        if key not in saved or saved[key] == value:
            continue
        if key == "dataset":
            other = f"{where} was trained on other data (fingerprint {saved[key]}, now {value})"
            raise UsageError(f"{other}; resume with the same data or start a new --output-dir", "--dataset")
        flag = {"num_processes": "--resume", "model_shape": "--model"}.get(key) or flag_of(key)
        other = f"{where} was made with {flag} {saved[key]}, this run has {value}"
        raise UsageError(f"{other}; resume with the same settings or start a new --output-dir", flag)


def check_finished_run(saved: dict[str, Any], run: RunConfig, options: Any, where: str) -> None:
    """Refuse `--resume` of a finished run (`saved`: its all_results.json config) with other settings, or more
    steps (its figures are not this run's), or whose model is damaged."""
    if damage := checkpoint_damage(Path(where).expanduser()):
        again = "train it again with --overwrite-output-dir"
        raise RunError(f"--resume: {where} holds a complete run, but {damage}; {again}")
    now = {**run.to_dict(), "options": dataclasses.asdict(options) if options is not None else {}}
    saved = {**saved, "options": saved.get("pt") or saved.get("tf") or {}}
    fields = [("data", n) for n in (*DATA_FIELDS, "dataset", "text_column")] + [("model", "model")]
    fields += [("train", n) for n in (*TRAIN_FIELDS, "max_steps", "num_epochs")]
    fields += [("options", n) for n in getattr(options, "identity_fields", ())]
    for part, name in fields:
        before, after = saved.get(part, {}).get(name), now[part].get(name)
        if name not in saved.get(part, {}) or after is None or before == after:
            continue
        if name in ("max_steps", "num_epochs"):
            new = f"start a new run from its model, --model {run.train.output_dir} with another --output-dir"
            finished = f"{where} is a finished run ({flag_of(name)} {before}); it is not trained further"
            raise UsageError(f"{finished}: {new}", flag_of(name))
        other = f"{where} is a finished run made with {flag_of(name)} {before}, this run has {after}"
        raise UsageError(f"{other}; start a new --output-dir, or --overwrite-output-dir to replace it", flag_of(name))


def check_steps_left(max_steps: int | None, steps_done: int, where: str) -> None:
    """Refuse a --max-steps below the steps done (equal finishes a run whose final save failed)."""
    if max_steps is not None and max_steps < steps_done:
        raise UsageError(f"{where} is at step {steps_done} already; give a larger value to train on", "--max-steps")


log = logging.getLogger("mlm")


@dataclass(frozen=True)
class StepPlan:
    """How many optimizer steps a run takes, from the micro-batches each process sees per epoch."""

    batches_per_epoch: int  # per process
    accumulation: int
    global_batch: int  # blocks per optimizer step, all processes together
    steps_per_epoch: int
    total_steps: int
    num_epochs: int  # epochs begun, the last one possibly cut short by --max-steps
    warmup_steps: int  # --warmup-steps, or --warmup-ratio of the total (rounded up, as the Trainer)

    @classmethod
    def make(
        cls, batches_per_epoch: int | None, accumulation: int, global_batch: int, train: TrainConfig
    ) -> "StepPlan":
        """`batches_per_epoch` None: a stream of unknown length, trained by --max-steps as one epoch."""
        if batches_per_epoch is None:
            if not train.max_steps:
                raise UsageError("is required with --streaming (a stream has no known length)", "--max-steps")
            batches_per_epoch = train.max_steps * accumulation
        steps_per_epoch = math.ceil(batches_per_epoch / accumulation)
        total_steps = train.max_steps or math.ceil(train.num_epochs * steps_per_epoch)
        epochs, warmup = math.ceil(total_steps / steps_per_epoch), math.ceil(train.warmup_ratio * total_steps)
        warmup = train.warmup_steps or warmup
        return cls(batches_per_epoch, accumulation, global_batch, steps_per_epoch, total_steps, epochs, warmup)

    def epoch_at(self, step: int) -> str:
        """`epoch 0.31` after 4 of 13 steps, `epoch 2` at the second epoch's end."""
        return f"epoch {round(step / self.steps_per_epoch, 2):g}"


def tracked_config(identity: dict[str, Any], plan: StepPlan) -> dict[str, Any]:
    """What the trackers record of a run: its identity and step count, None as "none" (for TensorBoard)."""
    return {
        **{key: "none" if value is None else value for key, value in identity.items()},
        "total_steps": plan.total_steps,
    }


class RunHooks:
    """What a caller may watch without entering the loop; the benchmarks time runs through this."""

    def on_step(self, step: int, loss: float, seconds: float) -> None:
        """An optimizer step's loss has been read; `seconds` is its share of the measured training time."""

    def on_evaluate(self, step: int, eval_loss: float) -> None:
        pass


@dataclass
class Recorder:
    """Where both loops report (loss log, trackers, console, hooks), and the clock of time spent in steps."""

    losses: LossLog
    hooks: list[RunHooks] = field(default_factory=list)
    track: Callable[[dict[str, float], int], None] = lambda values, step: None
    plan: StepPlan | None = None
    log_every: int = 0  # a progress line every N steps; set by a fit with no live bar (a log, not a terminal)
    train_seconds: float = 0.0
    train_tokens: int = 0
    steps_timed: int = 0
    data_wait_seconds: float | None = None
    loss_scaling: bool = False  # fp16: an overflowing step has an infinite gradient norm and is skipped

    def steps(self, first_step: int, losses: list, grad_norms: list, learning_rates: list, seconds: float) -> None:
        """Steps `first_step`, `first_step + 1`, ... and the seconds they took together (read at once)."""
        self.train_seconds += seconds
        figures = zip(losses, grad_norms, learning_rates, strict=True)
        for step, (loss, grad_norm, rate) in enumerate(figures, start=first_step):
            if not math.isfinite(loss) or not (math.isfinite(grad_norm) or self.loss_scaling):
                raise diverged(f"the loss is {loss:.4g} and the gradient norm {grad_norm:.4g} at step {step}")
            self.losses.log_step(step, loss, seconds / len(losses), grad_norm)
            self.track({"train/loss": loss, "train/grad_norm": grad_norm, "train/learning_rate": rate}, step)
            for hook in self.hooks:
                hook.on_step(step, loss, seconds / len(losses))
        self.steps_timed += len(losses)
        last, every = first_step + len(losses) - 1, self.log_every
        if every and (first_step == 1 or last // every > (first_step - 1) // every):  # step 1, or passed N
            self.progress_line(last, losses[-1], grad_norms[-1])

    def progress_line(self, step: int, loss: float, grad_norm: float) -> None:
        total = self.plan.total_steps
        eta = (total - step) * self.train_seconds / self.steps_timed
        speed, eta = f"{self.tokens_per_second:,.0f}", datetime.timedelta(seconds=round(eta))
        figures = f"loss {loss:.4f}, grad norm {grad_norm:.2f}, {speed} tokens/s, ETA {eta}"
        log.info(f"step {step}/{total} ({self.plan.epoch_at(step)}): {figures}")

    def evaluation(self, step: int, score: EvalScore, when: str) -> dict[str, float]:
        if not math.isfinite(score.loss):
            raise diverged(f"the eval loss is {score.loss} at step {step}")
        record = self.losses.log_eval(step, score.loss, score.accuracy)
        figures = {"eval/loss": score.loss, "eval/perplexity": record["perplexity"], "eval/accuracy": score.accuracy}
        self.track(figures, step)
        perplexity = record["perplexity"]
        log.info(f"{when}: eval loss {score.loss:.4f}, perplexity {perplexity:.2f}, accuracy {score.accuracy:.4f}")
        for hook in self.hooks:
            hook.on_evaluate(step, score.loss)
        return record

    @property
    def tokens_per_second(self) -> float:
        return self.train_tokens / max(self.train_seconds, 1e-9)


def diverged(what: str) -> RunError:
    """Training diverged: stopped before a non-finite model is saved, the checkpoints before it kept."""
    advice = "try a lower --learning-rate or clip with --max-grad-norm, in a new --output-dir"
    return RunError(f"training diverged: {what}; no model is saved as the run's result ({advice})")


class Backend(Protocol):
    """What a framework supplies to `train`."""

    framework: str  # "pytorch", "tensorflow"
    short: str  # "pt", "tf": the CLI's prefix
    is_main: bool  # the process that writes (one per run)
    num_processes: int
    device: str  # where the steps run, in words
    options: Any  # the framework's own options dataclass (its mixed_precision is reported)
    model_config: Any  # the loaded model's transformers config (its shape is part of the run's identity)
    saved_bytes: int  # about what the final model takes on disk, for the free-space check
    pushes: Pushes | None  # set by `train` when pushing: every_save pushes go through it

    plan: StepPlan  # set by `load`

    # Processes, devices, strategy: before anything else touches the framework.
    def start(self, run: RunConfig) -> None: ...
    # Refuse, before anything is written, a model (transformers config) this framework cannot train as asked.
    def check_model(self, config) -> None: ...
    # A model of `config` with weights fresh from `seed`, saved in `folder` (training from scratch).
    def save_fresh(self, config, folder: Path, seed: int) -> None: ...
    # Model, loaders, optimizer and `plan`; returns the weights the checkpoint lacked.
    def load(self, resolved: ResolvedModel, tokenizer, data: MLMData) -> list[str]: ...
    # The loss log so far: restored from --resume's checkpoint, or empty for a fresh run.
    def resume(self, out: Path, identity: dict[str, Any]) -> LossLog: ...
    def settings(self) -> dict[str, Any]: ...  # its own derived settings (batch layout, kernels), for the log
    def evaluate(self) -> EvalScore: ...  # token-weighted mean loss and accuracy over the frozen eval set
    # Train to the plan's end, evaluating and checkpointing as configured; returns the steps done.
    def fit(self, recorder: Recorder, out: Path) -> int: ...
    def save(self, folder: Path) -> None: ...  # the final model and tokenizer, loadable by both frameworks
    def barrier(self) -> None: ...
    def track(self, values: dict[str, float], step: int) -> None: ...  # scalars for --report-to
    # Release what the run held; `completed`: the report is written, so resume state may go.
    def finish(self, out: Path, completed: bool) -> None: ...


def train(run: RunConfig, backend: Backend, hooks: list[RunHooks] | None = None) -> Results:
    """Fine-tune, evaluate before and after, save model, tokenizer and report; return the results."""
    # ---- setup: fail fast on anything that would stop the run later
    if not isinstance(run, RunConfig):
        raise WrongType(f"train(run=...) takes a RunConfig, got {run!r}")
    backend.start(run)
    if backend.is_main:  # an overwrite killed earlier: its previous run back, or the replacement finished
        recover_interrupted_overwrite(Path(run.train.output_dir))
    backend.barrier()
    if run.model.from_scratch:
        resolved = fresh_model(
            run.model, run.train.seed, cache_root(run.data), backend.check_model, backend.save_fresh
        )
        model_config, tokenizer = load_checked(resolved, run.data.block_size)
    else:
        resolved = dataclasses.replace(resolve_model(run.model.model), hub=run.model.hub_kwargs())
        model_config, tokenizer = load_checked(resolved, run.data.block_size, run.model.tokenizer_name)
    backend.check_model(model_config)
    if run.hub.push_to_hub:
        check_push_possible(run.hub)
    if run.train.resume and (finished := completed_results(check_output_dir(run.train))):
        check_finished_run(finished.config, run, backend.options, run.train.output_dir)
        steps = finished.optimizer_steps
        log.warning("%s holds a complete run (%d optimizer steps); nothing to resume", run.train.output_dir, steps)
        return finished  # a finished run is never rewritten
    # Every process checks the folder before the main one creates and locks it.
    with claimed_output_dir(run, resolved.location, backend.is_main, backend.barrier) as out:
        backend.barrier()  # the main process has created the folder
        completed = False
        try:
            data = prepare_data(run.data, tokenizer, run.train.seed)
            # The repository is made now, so a missing permission stops the run before it trains.
            backend.pushes = Pushes(run.hub) if run.hub.push_to_hub and backend.is_main else None
            new_weights = backend.load(resolved, tokenizer, data)
            report_fresh_weights(new_weights, resolved.name)
            identity = run_identity(
                run, resolved.name, backend.model_config, data, backend.num_processes, backend.options
            )
            losses = backend.resume(out, identity)
            log_derived(run, data, backend)
            recorder = Recorder(losses, list(hooks or []), backend.track, backend.plan)
            recorder.loss_scaling = backend.options.mixed_precision in ("fp16", "mixed_float16")
            if backend.is_main:  # set up: the run describes itself, and --config repeats it
                write_run_config(out, run.flat(backend.options), run.config_format)

            # ---- evaluate before training (a resumed run keeps the figure of its true start)
            if not losses.evals:
                start = backend.evaluate()
                if not math.isfinite(start.loss):
                    weights = f"{resolved.name} has an eval loss of {start.loss}: its weights are not finite"
                    raise UsageError(f"{weights}; train from another model", "--model")
                recorder.evaluation(0, start, "before training")

            # ---- fit; each epoch ends with an evaluation and a checkpoint
            steps_done = backend.fit(recorder, out)

            # ---- report (the last evaluation ran at the end of the fit) and save
            results = results_of(run, backend, recorder, data, resolved, tokenizer, new_weights, steps_done)
            backend.barrier()
            if backend.is_main:
                save_and_publish(out, results, backend, run, None if resolved.from_scratch else resolved.location)
            completed = True
            return results
        finally:
            backend.finish(out, completed)


def results_of(run, backend, recorder, data, resolved, tokenizer, new_weights, steps_done) -> Results:
    return Results.of_run(
        recorder.losses,
        framework=backend.framework,
        config={**run.to_dict(), backend.short: asdict(backend.options)},
        data=data.summary(),
        model=resolved.name,
        from_scratch=resolved.from_scratch,
        mask_token=tokenizer.mask_token,
        fresh_weights=new_weights,
        optimizer_steps=steps_done,
        steps_per_epoch=backend.plan.steps_per_epoch,
        global_batch=backend.plan.global_batch,
        precision=backend.options.mixed_precision,
        device=backend.device,
        num_processes=backend.num_processes,
        train_tokens=recorder.train_tokens,
        train_seconds=recorder.train_seconds,
        data_wait_seconds=recorder.data_wait_seconds,
    )


def log_derived(run: RunConfig, data: MLMData, backend: Backend) -> None:
    """The line that says what the settings came to: blocks, steps, batch, precision, device."""
    plan, blocks = backend.plan, "streamed" if run.data.streaming else len(data.train_blocks)
    own = ", ".join(f"{name} {value}" for name, value in backend.settings().items())
    log.info(
        f"derived: {blocks} train blocks, {data.eval_blocks} eval blocks, {plan.steps_per_epoch} steps/epoch, "
        f"{plan.total_steps} optimizer steps, global batch {plan.global_batch}, "
        f"{plan.global_batch * run.data.block_size} tokens/step, precision {backend.options.mixed_precision}, "
        f"device {backend.device}, {own}"
    )


def save_and_publish(out: Path, results: Results, backend: Backend, run: RunConfig, base: str | None) -> None:
    """The final model, the report (all_results.json last: the run is complete), then the Hub, each announced."""
    log.info("saving the model and tokenizer to %s", out)
    save_model_atomically(out, backend.save, backend.saved_bytes)
    log.info("writing the model card, loss curve and metrics (all_results.json)")
    write_run_report(out, results, backend.short, base)
    after = results.after
    log.info("after training: eval loss %.4f, perplexity %.2f; saved to %s", after.eval_loss, after.perplexity, out)
    if backend.pushes is not None:
        log.info("pushing %s to the Hub repository %s", out, run.hub.hub_model_id)
        backend.pushes.push_folder(out, f"{backend.short}-mlm: perplexity {after.perplexity:.2f}")
