"""`pt-mlm train`: masked-LM fine-tuning with a plain Hugging Face Accelerate loop (no Trainer).

Runbook (the same command everywhere; Accelerate decides the processes; more in docs/scaling.md):

    pt-mlm train --model builtin:minilm --dataset builtin:chatterbot --output-dir runs/minilm  # one CPU or GPU
    pt-mlm train --model distilbert/distilroberta-base --dataset eli5_category ...  # the guide's recipe, online
    pt-mlm train --mixed-precision bf16 ...  # an Ampere+ GPU or a CPU; fp16 on a GPU
    accelerate launch --multi_gpu --num_processes 8 -m pt_mlm train ...  # global batch: x processes x accumulation
    torchrun --nproc_per_node 2 -m pt_mlm train ...  # CPU processes over gloo (`accelerate launch --cpu` starts one)
    accelerate launch --num_machines 2 --machine_rank 0 --main_process_ip host1 ... -m pt_mlm train ...  # each node
    pt-mlm train ... --resume auto  # from the newest complete checkpoint

The run itself (setup, evaluate before, fit, evaluate after, save) is `mlm_toolkit.run.train`;
this module is what PyTorch does differently: `TorchBackend`, whose `fit` is the step loop, in plain sight.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, GradientAccumulationPlugin, set_seed
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm
from transformers import AutoModelForMaskedLM, get_scheduler

import mlm_toolkit.run
from mlm_toolkit.config import RunConfig
from mlm_toolkit.convert import add_tensorflow_weights
from mlm_toolkit.errors import RunError, Terminated, UsageError
from mlm_toolkit.masking import micro_batch_seed
from mlm_toolkit.metrics import EvalScore, LossLog, Results
from mlm_toolkit.outputs import find_resume_checkpoint
from mlm_toolkit.run import Recorder, RunHooks, StepPlan, tracked_config
from pt_mlm.checkpoint import Progress, load_checkpoint, read_process_state, save_checkpoint, save_model_folders
from pt_mlm.compat import OneDNNLinear, fresh_accelerator_state, onednn_linears, onednn_pays, speed_workarounds
from pt_mlm.launch import DISTRIBUTED, check_launch
from pt_mlm.loaders import WaitClock, eval_loader, train_source
from pt_mlm.model import MaskedTokenLoss, load_masked_lm, mean_masked_loss, no_decay_groups
from pt_mlm.options import PTOptions

log = logging.getLogger("pt_mlm")


def train(run: RunConfig, options: PTOptions | None = None, hooks: list[RunHooks] | None = None) -> Results:
    """Fine-tune with PyTorch and Accelerate; evaluate before and after; save model, tokenizer, report."""
    return mlm_toolkit.run.train(run, TorchBackend(options or PTOptions()), hooks)


class UnreadSteps:
    """Step losses and grad norms kept on the device until read back together (reading one waits for the GPU
    to finish what is queued), with each step's learning rate."""

    def __init__(self, backend: "TorchBackend", recorder: Recorder) -> None:
        self.accelerator, self.scheduler, self.recorder = backend.accelerator, backend.scheduler, recorder
        self.pending: list[torch.Tensor] = []
        self.rates: list[float] = []
        self.restart()

    def restart(self) -> None:
        """Time from now: what ran since the last read (an evaluation, a checkpoint) is not training."""
        self.tic = time.perf_counter()

    def add(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        self.pending.append(torch.stack([loss, grad_norm.float()]))
        self.rates.append(self.scheduler.get_last_lr()[0])  # as the Trainer logs it: after the step

    def read(self, last_step: int) -> list[float]:
        """Gather the pending steps (all processes at once) and record them, ending at `last_step`."""
        if not self.pending:
            return []
        processes = self.accelerator.num_processes
        gathered = self.accelerator.gather(torch.stack(self.pending)).reshape(processes, len(self.pending), 2)
        losses = gathered[..., 0].mean(0).tolist()
        grad_norms = gathered[0, :, 1].tolist()  # the same on every process: gradients are synced
        first = last_step - len(losses) + 1
        self.recorder.steps(first, losses, grad_norms, self.rates, time.perf_counter() - self.tic)
        self.pending, self.rates = [], []
        self.restart()
        return losses


@dataclass
class Loop:
    """What one fit carries from step to step: where the run stands, and where its figures go."""

    out: Path
    progress: Progress
    recorder: Recorder
    unread: UnreadSteps
    bar: tqdm
    waiting: WaitClock = dataclasses.field(default_factory=WaitClock)


class TorchBackend:
    """What PyTorch does in `mlm_toolkit.run.train`: Accelerate, the sparse-head loss, AdamW, the loop."""

    framework, short = "pytorch", "pt"

    def __init__(self, options: PTOptions) -> None:
        self.options, self.pushes = options, None

    # ---- setup
    def start(self, run: RunConfig) -> None:
        accumulation, gpu = (
            self.options.gradient_accumulation_steps,
            torch.cuda.is_available() and not self.options.use_cpu,
        )
        self.run = run
        if self.options.mixed_precision == "fp16" and not gpu:
            raise UsageError("fp16 needs a CUDA GPU and none is visible; use bf16 on a CPU", "--mixed-precision")
        check_launch(gpu)
        fresh_accelerator_state()  # a second train() in this process may ask for another precision
        runs = Path(run.train.output_dir).expanduser() / "runs"
        if "tensorboard" in run.train.report_to:
            from mlm_toolkit.trackers import tensorboard_without_tensorflow

            tensorboard_without_tensorflow()
        if "mlflow" in run.train.report_to:
            from mlm_toolkit.trackers import mlflow_store_in

            mlflow_store_in(runs)
        self.accelerator = Accelerator(
            # Launched by torchrun/accelerate with no GPU: several CPU processes over gloo.
            cpu=self.options.use_cpu or (not gpu and "LOCAL_RANK" in os.environ),
            # A setting not given here is Accelerate's to decide: `accelerate launch --mixed_precision`,
            # ACCELERATE_* variables. Given, it wins (a plugin, since Accelerate's variable beats the number).
            mixed_precision=self.options.mixed_precision,
            gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=accumulation) if accumulation else None,
            # Batches come pinned on a GPU machine; copying them without waiting keeps the host ahead.
            dataloader_config=DataLoaderConfiguration(non_blocking=gpu),
            log_with=list(run.train.report_to) or None,  # --report-to: Accelerate's own trackers
            project_dir=str(runs),
        )
        # From here on the options say what is used, for the log, the identity, run_config and results.
        accelerator = self.accelerator
        self.options = self.options.resolved(accelerator.mixed_precision, accelerator.gradient_accumulation_steps, gpu)
        self.is_main, self.num_processes = self.accelerator.is_main_process, self.accelerator.num_processes
        self.device = str(self.accelerator.device)
        kind = accelerator.distributed_type
        self.distributed = DISTRIBUTED.get(kind.name, kind.name) + f" over {self.num_processes} processes" * (
            self.num_processes > 1
        )

    def check_model(self, config) -> None:
        attention, family = self.options.attention, AutoModelForMaskedLM._model_mapping[type(config)]
        if attention not in (None, "eager") and not getattr(family, f"_supports_{attention}", True):
            reason = f"{config.model_type} models have no {attention} attention in transformers"
            raise UsageError(f"{reason}; use --attention eager, or leave it out", "--attention")
        if self.run.data.line_by_line and "attention_mask" not in inspect.signature(family.forward).parameters:
            what = f"{config.model_type} takes no attention mask, so it would read the padding as text"
            raise UsageError(f"{what}; train on blocks (leave out --line-by-line)", "--line-by-line")

    def save_fresh(self, config, folder: Path, seed: int) -> None:
        set_seed(seed)
        AutoModelForMaskedLM.from_config(config).save_pretrained(folder)

    def load(self, resolved, tokenizer, data) -> list[str]:
        train_cfg, options, processes = self.run.train, self.options, self.num_processes
        set_seed(train_cfg.seed)  # the fresh MLM head of an encoder-only checkpoint is initialised from this
        model, info = load_masked_lm(resolved, options.attention, options.torch_dtype)
        model.float()  # float32 weights to train, whatever --torch-dtype loaded (autocast gives bf16 compute)
        if options.gradient_checkpointing:
            if not model.supports_gradient_checkpointing:
                reason = f"{model.config.model_type} models cannot recompute activations in transformers"
                raise UsageError(f"{reason}; leave it out", "--gradient-checkpointing")
            model.gradient_checkpointing_enable()
        if options.torch_compile:
            # The encoder's forward (fixed shapes), not the module: the sparse head's cut, a hook on the
            # module, stays outside the graph, its row count varying each step.
            model.base_model.forward = torch.compile(model.base_model.forward)
        elif self.device == "cpu" and options.mixed_precision == "no" and not self.run.data.line_by_line:
            if speed_workarounds(options.workarounds) and onednn_pays():  # on whole blocks only (compat)
                onednn_linears(model.base_model)  # bf16 products already run on oneDNN
        probe = {key: torch.from_numpy(value[:2].astype(np.int64)) for key, value in data.eval_inputs.items()}
        net = MaskedTokenLoss(model, probe if options.sparse_head else None)
        if options.sparse_head and not net.sparse:
            log.warning("--sparse-head: not for %s, %s; the full head runs", model.config.model_type, net.dense_reason)
        self.model_config, self.tokenizer = model.config, tokenizer
        self.weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        self.saved_bytes = self.weight_bytes * (2 if options.tf_weights else 1)
        self.source = train_source(data, tokenizer, self.run, options, self.accelerator)
        accumulation = options.gradient_accumulation_steps
        global_batch = train_cfg.per_device_batch_size * processes * accumulation
        # Batches counted after sharding: 1/N of them per process.
        self.plan = StepPlan.make(self.source.batches_per_epoch(processes), accumulation, global_batch, train_cfg)
        groups, fused = no_decay_groups(model, train_cfg.weight_decay), options.fused_adamw or None
        betas, eps = (train_cfg.adam_beta1, train_cfg.adam_beta2), train_cfg.adam_epsilon
        optimizer = torch.optim.AdamW(groups, lr=train_cfg.learning_rate, betas=betas, eps=eps, fused=fused)
        # The prepared scheduler steps once per process per optimizer step, hence the factor.
        warmup, total = self.plan.warmup_steps * processes, self.plan.total_steps * processes
        scheduler = get_scheduler(train_cfg.lr_scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=total)
        # A stream is sharded by rows (split_dataset_by_node), a map-style loader by Accelerate.
        loaders = [] if self.source.streaming else [self.source.loader]
        self.net, self.optimizer, self.evals, self.scheduler, *loaders = self.accelerator.prepare(
            net,
            optimizer,
            eval_loader(data.eval_inputs, train_cfg.eval_batch),
            scheduler,
            *loaders,
        )
        self.loader = loaders[0] if loaders else self.source
        save_model_folders(self.accelerator, tokenizer)  # every checkpoint-N/ loads as a model
        return info["missing_keys"]

    def resume(self, out: Path, identity: dict) -> LossLog:
        self.progress = Progress(identity=identity)  # where fit() starts: here, or the checkpoint's place
        if self.run.train.report_to:
            try:
                self.accelerator.init_trackers("pt-mlm", config=tracked_config(identity, self.plan))
            except Exception as error:  # each tracker library fails its own way
                from mlm_toolkit.trackers import tracker_failed

                raise tracker_failed(error) from error
        if self.run.train.resume:
            checkpoint = find_resume_checkpoint(out, self.run.train.resume)
            self.progress = load_checkpoint(self.accelerator, checkpoint, identity, self.run.train.max_steps)
            self.source.restore(read_process_state(checkpoint, self.accelerator.process_index))
            step, epoch = self.progress.global_step, self.progress.epoch
            log.info("resumed from %s at step %d (epoch %d)", checkpoint, step, epoch)
        return LossLog.from_dict(self.progress.loss_log)

    def settings(self) -> dict[str, object]:
        return {
            "distributed": self.distributed,
            "batch": f"{self.run.train.per_device_batch_size} per device x {self.num_processes} processes",
            "x accumulation": self.plan.accumulation,
            "sparse head": self.accelerator.unwrap_model(self.net).sparse,
            "attention": self.model_config._attn_implementation,
            "oneDNN linears": any(isinstance(m, OneDNNLinear) for m in self.net.modules()),
            "fused AdamW": self.options.fused_adamw,
            "torch.compile": self.options.torch_compile,
            "loader workers": self.options.loader_workers,
        }

    def track(self, values: dict[str, float], step: int) -> None:
        self.accelerator.log(values, step=step)

    def barrier(self) -> None:
        self.accelerator.wait_for_everyone()

    # ---- evaluate
    def evaluate(self) -> EvalScore:
        return mean_masked_loss(self.net, self.evals, self.accelerator)

    # ---- fit
    def fit(self, recorder: Recorder, out: Path) -> int:
        plan, progress = self.plan, self.progress
        # A live bar on a terminal; in a log (not a terminal) a line every --log-every steps instead.
        shown = None if self.accelerator.is_local_main_process else True  # None: on a terminal only
        bar = tqdm(total=plan.total_steps, initial=progress.global_step, desc="train", mininterval=1.0, disable=shown)
        loop = Loop(out, progress, recorder, UnreadSteps(self, recorder), bar)
        recorder.log_every = self.options.log_every if bar.disable else 0
        self.net.train()
        try:
            with logging_redirect_tqdm():  # log lines print above the bar, not glued onto it
                for epoch in range(progress.epoch, plan.num_epochs):
                    if progress.global_step >= plan.total_steps:
                        break
                    self.train_epoch(loop, epoch)
                    # ---- end of epoch: evaluate, checkpoint
                    self.show(loop, loop.unread.read(progress.global_step))  # before evaluating: not training
                    streaming = self.source.streaming
                    self.evaluation(loop, "end" if streaming else plan.epoch_at(progress.global_step))
                    if not streaming and (
                        progress.global_step < plan.total_steps
                        or progress.batches_done_in_epoch >= plan.batches_per_epoch
                    ):
                        # The epoch ran to its end. Stopped by --max-steps it did not: a resume with more
                        # steps continues it where it stopped (and a stream never ends an epoch).
                        progress.epoch, progress.batches_done_in_epoch = epoch + 1, 0
                    run_end = progress.global_step >= plan.total_steps
                    if self.run.train.checkpoints_at(progress.global_step, epoch_end=True, run_end=run_end):
                        self.checkpoint(loop)
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM through the CLI
            bar.close()
            raise self.interrupted(
                loop, "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted"
            ) from None
        finally:
            bar.close()  # whatever stops the loop, what is printed next starts on a line of its own
        recorder.data_wait_seconds = loop.waiting.seconds
        if recorder.train_seconds > 0:
            waited = 100 * loop.waiting.seconds / recorder.train_seconds
            message = "trained %.0f tokens/s; %.1f%% of the step time went to waiting for batches (--loader-workers)"
            log.info(message, recorder.tokens_per_second, waited)
        return progress.global_step

    def train_epoch(self, loop: Loop, epoch: int) -> None:
        """Optimizer steps until the epoch's batches or --max-steps run out: the step, from a batch to the
        optimizer's update, in plain sight."""
        progress, accelerator, train_cfg = loop.progress, self.accelerator, self.run.train
        start = progress.batches_done_in_epoch if epoch == progress.epoch else 0
        self.source.set_position(epoch, start * self.num_processes)
        progress.epoch, progress.batches_done_in_epoch = epoch, start
        tokens_per_batch = train_cfg.per_device_batch_size * self.run.data.block_size * self.num_processes
        micro_losses: list[torch.Tensor] = []
        max_norm = train_cfg.max_grad_norm or math.inf
        loop.unread.restart()
        for batch in loop.waiting.iterate(self.loader):
            # Dropout draws are a function of the micro-batch's place in the run, so every micro-batch of
            # an accumulation window draws its own, and a resumed run the same.
            place = (epoch, progress.batches_done_in_epoch, accelerator.process_index)
            torch.manual_seed(micro_batch_seed(train_cfg.seed, *place))
            # ---- forward and backward; at the end of an accumulation window, clip and step
            with accelerator.accumulate(self.net):
                # Each micro-batch's mean over its masked tokens, averaged over the window by backward(), as
                # the Trainer does for BERT/RoBERTa (they take no num_items_in_batch).
                loss = self.net(**batch)[0].mean()
                accelerator.backward(loss)
                if accelerator.sync_gradients:  # with clipping off the factor is 1, and the norm still logged
                    grad_norm = accelerator.clip_grad_norm_(self.net.parameters(), max_norm)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
            micro_losses.append(loss.detach())
            progress.batches_done_in_epoch += 1
            loop.recorder.train_tokens += tokens_per_batch
            if not accelerator.sync_gradients:
                continue
            # ---- one optimizer step done: log, evaluate, checkpoint, stop at --max-steps
            progress.global_step += 1
            loop.unread.add(torch.stack(micro_losses).mean(), grad_norm)
            micro_losses = []
            loop.bar.update(1)
            step = progress.global_step
            # The first step is read at once: it times the start-up (time to first step).
            if step == 1 or step % self.options.log_every == 0:
                self.show(loop, loop.unread.read(step))
            if step >= self.plan.total_steps:
                return  # the end of the epoch (evaluation, checkpoint) covers this step
            if train_cfg.eval_steps and step % train_cfg.eval_steps == 0:
                self.evaluation(loop, f"step {step}")
            if train_cfg.checkpoints_at(step, epoch_end=False, run_end=False):
                self.checkpoint(loop)

    def evaluation(self, loop: Loop, when: str) -> None:
        """Evaluate now, unless these weights were just evaluated (--eval-steps at an epoch's end)."""
        step = loop.progress.global_step
        loop.unread.read(step)
        evals = loop.recorder.losses.evals
        if not evals or evals[-1]["step"] != step:
            loop.recorder.evaluation(step, self.evaluate(), when)
        loop.unread.restart()  # evaluating is not training time

    def interrupted(self, loop: Loop, how: str) -> RunError:
        """Ctrl-C or SIGTERM: a checkpoint of the last whole optimizer step, and how to go on from it."""
        progress = loop.progress
        if progress.global_step == 0:
            return RunError(f"{how} before the first optimizer step; nothing to resume from")
        progress.batches_done_in_epoch -= progress.batches_done_in_epoch % self.options.gradient_accumulation_steps
        saved = self.checkpoint(loop)
        return RunError(f"{how} at step {progress.global_step}; saved {saved}; continue with --resume auto")

    def show(self, loop: Loop, losses: list[float]) -> None:
        """The latest step's figures on the live bar (in a log, the recorder prints them)."""
        if losses:
            speed = f"{loop.recorder.tokens_per_second:,.0f}"
            grad_norm = loop.recorder.losses.grad_norms[-1]
            loop.bar.set_postfix(loss=f"{losses[-1]:.3f}", grad_norm=f"{grad_norm:.2f}", tok_s=speed)

    def checkpoint(self, loop: Loop) -> Path:
        progress = loop.progress
        loop.unread.read(progress.global_step)
        progress.loss_log = loop.recorder.losses.to_dict()
        keep, state = self.options.save_total_limit, self.source.state()
        saved = save_checkpoint(self.accelerator, loop.out, progress, keep, self.weight_bytes, process_state=state)
        if self.pushes is not None:  # --hub-strategy every_save: this save's model, in the background
            self.pushes.push_save(loop.out, self.save_for_hub, f"pt-mlm: step {progress.global_step}")
        loop.unread.restart()  # saving is not training time
        return saved

    # ---- save
    def save_for_hub(self, folder: Path) -> None:
        """The model and tokenizer as the Trainer saves them; with --tf-weights as `pytorch_model.bin`, as
        transformers 4.x would load a `model.safetensors` into TensorFlow before `tf_model.h5`, and fail."""
        model = self.accelerator.unwrap_model(self.net).model
        model.save_pretrained(folder, safe_serialization=not self.options.tf_weights)
        self.tokenizer.save_pretrained(folder)

    def save(self, folder: Path) -> None:
        self.save_for_hub(folder)
        if self.options.tf_weights:
            add_tensorflow_weights(folder)

    def finish(self, out: Path, completed: bool) -> None:
        self.accelerator.end_training()
