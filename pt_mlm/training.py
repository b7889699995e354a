"""`pt-mlm train`: masked-LM fine-tuning with a plain Hugging Face Accelerate loop (no Trainer).

Runbook (the same command everywhere; Accelerate decides the processes):

    # one CPU or GPU
    pt-mlm train --model builtin:minilm --dataset builtin:chatterbot --output-dir runs/minilm
    # the guide's recipe, online
    pt-mlm train --model distilbert/distilroberta-base --dataset eli5_category --output-dir runs/eli5
    # bf16 on an Ampere+ GPU or a CPU; fp16 on a GPU
    pt-mlm train --mixed-precision bf16 ...
    # several GPUs on one machine (global batch = per-device x processes x accumulation)
    accelerate launch --multi_gpu --num_processes 8 -m pt_mlm train ...
    # two processes on a CPU-only machine (gloo; `accelerate launch --cpu` would start only one)
    torchrun --nproc_per_node 2 -m pt_mlm train ...
    # several nodes: run on each node, with its own --machine_rank
    accelerate launch --num_machines 2 --machine_rank 0 --main_process_ip host1 --main_process_port 29500 \
        --num_processes 16 -m pt_mlm train ...
    # continue a stopped run from its newest complete checkpoint
    pt-mlm train ... --resume auto

The function `train` reads top to bottom: setup, evaluate before, fit, evaluate after, save.
"""

from __future__ import annotations

from pt_mlm.environment import prepare

prepare()  # before transformers is imported  # noqa: E402

import logging
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DataLoaderConfiguration, set_seed
from tqdm.auto import tqdm
from transformers import AutoModelForMaskedLM, get_scheduler

from pt_mlm.checkpoint import Progress, load_checkpoint, save_checkpoint
from pt_mlm.heads import MaskedTokenLoss
from pt_mlm.loaders import WaitClock, eval_loader, micro_batch_seed, train_loader
from shared.blocks import prepare_data
from pt_mlm.options import PTOptions
from shared.config import RunConfig
from shared.errors import RunError, UsageError
from shared.export import add_weights_for_other_framework
from shared.identity import completed_results, run_identity
from shared.metrics import LossLog, TokenWeightedMean, perplexity
from shared.models import load_checked, load_weights, report_fresh_weights, resolve_model
from shared.outputs import check_output_dir, claimed_output_dir, find_resume_checkpoint, save_model_atomically
from shared.publish import check_push_possible, push_folder
from shared.reports import build_results, write_run_report

log = logging.getLogger("pt_mlm")


def no_decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: biases and LayerNorm weights are not decayed (as BERT and the HF examples do)."""
    decay, plain = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (plain if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


@torch.no_grad()
def evaluate(net, loader, accelerator) -> float:
    """Token-weighted mean cross-entropy over every masked token of the frozen eval set."""
    net.eval()
    mean = TokenWeightedMean()
    for batch in loader:
        token_losses, rows = net(**batch)
        # Per-block sums, so gather_for_metrics can drop the blocks padded in to even out processes.
        blocks = len(batch["labels"])
        block_sums = torch.zeros(blocks, device=token_losses.device).index_add_(0, rows, token_losses)
        block_counts = torch.zeros(blocks, device=token_losses.device).index_add_(0, rows, torch.ones_like(token_losses))
        block_sums, block_counts = accelerator.gather_for_metrics((block_sums, block_counts))
        mean.add(block_sums.sum().item() / max(block_counts.sum().item(), 1), int(block_counts.sum().item()))
    net.train()
    return mean.mean


def train(run: RunConfig, options: PTOptions | None = None) -> dict:
    """Fine-tune, evaluate before and after, save model, tokenizer, report; return the results."""
    options = options or PTOptions()

    # ---- setup: fail fast on anything that would stop the run later
    resolved = resolve_model(run.model.model)
    _, tokenizer = load_checked(resolved, run.data.block_size)
    if run.hub.push_to_hub:
        check_push_possible(run.hub)
    finished = completed_results(check_output_dir(run.train)) if run.train.resume else None
    if finished:  # a finished run is never rewritten
        log.warning("%s holds a complete run (%d optimizer steps); nothing to resume", run.train.output_dir,
                    finished["optimizer_steps"])
        return finished
    # Accelerate keeps one state per process; a second train() from Python (a notebook, the tests)
    # may ask for another precision. The process group itself (PartialState) is kept.
    AcceleratorState._reset_state()
    accelerator = Accelerator(
        # Launched by torchrun/accelerate with no GPU: several CPU processes over gloo.
        cpu=not torch.cuda.is_available() and "LOCAL_RANK" in os.environ,
        mixed_precision=options.mixed_precision,
        gradient_accumulation_steps=run.train.gradient_accumulation_steps,
        # Batches come pinned on a GPU machine; copying them without waiting keeps the host ahead.
        dataloader_config=DataLoaderConfiguration(non_blocking=torch.cuda.is_available()),
        log_with="tensorboard" if run.train.report_to == "tensorboard" else None,
        project_dir=str(Path(run.train.output_dir).expanduser() / "runs"),
    )
    # Every process checks the folder before the main one creates and locks it.
    with claimed_output_dir(run, resolved.location, accelerator.is_main_process) as out:
        accelerator.wait_for_everyone()
        return fit_and_save(run, options, accelerator, resolved, tokenizer, out)


def fit_and_save(run: RunConfig, options: PTOptions, accelerator: Accelerator, resolved, tokenizer, out: Path) -> dict:
    """The run itself, in a claimed output folder: data, model, evaluate before, fit, save, report."""
    data_cfg, train_cfg = run.data, run.train
    resume_from = find_resume_checkpoint(out, train_cfg.resume) if train_cfg.resume else None
    set_seed(train_cfg.seed)  # the fresh MLM head of an encoder-only checkpoint is initialised from this
    data = prepare_data(data_cfg, tokenizer, train_cfg.seed)
    model, info = load_weights(lambda: AutoModelForMaskedLM.from_pretrained(
        resolved.location, output_loading_info=True, attn_implementation=options.attention, **resolved.load_kwargs()
    ), resolved.name)
    report_fresh_weights(info["missing_keys"], resolved.name)
    if options.torch_compile:
        model.base_model.compile()  # the encoder: fixed shapes; the sparse head's row count varies
    net = MaskedTokenLoss(model, sparse=options.sparse_head)
    loader, batches = train_loader(
        data.train_blocks, tokenizer, data_cfg.mlm_probability, train_cfg.per_device_batch_size, train_cfg.seed,
        options.loader_workers,
    )
    evals = eval_loader(data.eval_inputs, train_cfg.eval_batch)
    optimizer = torch.optim.AdamW(
        no_decay_groups(model, train_cfg.weight_decay), lr=train_cfg.learning_rate, fused=options.fused_adamw or None
    )

    # Steps are counted after sharding: each process sees 1/N of the batches.
    batches_per_epoch = math.ceil(len(loader) / accelerator.num_processes)
    steps_per_epoch = math.ceil(batches_per_epoch / train_cfg.gradient_accumulation_steps)
    total_steps = train_cfg.max_steps or math.ceil(train_cfg.num_epochs * steps_per_epoch)
    num_epochs = math.ceil(total_steps / steps_per_epoch)
    # The prepared scheduler steps once per process per optimizer step, hence the factor.
    scheduler = get_scheduler(
        train_cfg.lr_scheduler,
        optimizer,
        num_warmup_steps=train_cfg.warmup_steps * accelerator.num_processes,
        num_training_steps=total_steps * accelerator.num_processes,
    )
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    net, optimizer, loader, evals, scheduler = accelerator.prepare(net, optimizer, loader, evals, scheduler)
    global_batch = train_cfg.per_device_batch_size * accelerator.num_processes * train_cfg.gradient_accumulation_steps
    settings = run_identity(run, resolved.name, model.config, data.texts, accelerator.num_processes)
    log.info(
        "derived: %d train blocks, %d eval blocks, %d steps/epoch, %d optimizer steps, global batch %d "
        "(%d per device x %d processes x %d accumulation), %d tokens/step, precision %s, device %s, "
        "sparse head %s, %s attention, fused AdamW %s, torch.compile %s, %d loader workers",
        len(data.train_blocks), data.eval_blocks, steps_per_epoch, total_steps, global_batch,
        train_cfg.per_device_batch_size, accelerator.num_processes, train_cfg.gradient_accumulation_steps,
        global_batch * data_cfg.block_size, options.mixed_precision, accelerator.device,
        accelerator.unwrap_model(net).sparse, model.config._attn_implementation, options.fused_adamw, options.torch_compile, options.loader_workers,
    )
    if train_cfg.report_to == "tensorboard":
        hparams = {key: "none" if value is None else value for key, value in settings.items()}  # TensorBoard takes no None
        accelerator.init_trackers("pt-mlm", config={**hparams, "total_steps": total_steps})

    progress = Progress(settings=settings)
    if resume_from:
        progress = load_checkpoint(accelerator, resume_from, settings, train_cfg.max_steps)
        log.info("resumed from %s at step %d (epoch %d)", resume_from, progress.global_step, progress.epoch)
    losses = LossLog.from_dict(progress.loss_log)

    # ---- evaluate before training (also a fail-fast check that a forward pass works)
    if not losses.evals:  # a resumed run keeps the figure of its true start
        before = losses.log_eval(0, evaluate(net, evals, accelerator))
        accelerator.log({"eval/loss": before["eval_loss"], "eval/perplexity": before["perplexity"]}, step=0)
        log.info("before training: eval loss %.4f, perplexity %.2f", before["eval_loss"], before["perplexity"])

    # ---- fit
    bar = tqdm(total=total_steps, initial=progress.global_step, disable=not accelerator.is_local_main_process,
               desc="train", mininterval=1.0)
    tokens_per_batch = train_cfg.per_device_batch_size * data_cfg.block_size * accelerator.num_processes
    trained_tokens, train_seconds, first_step_time = 0, 0.0, None
    waiting = WaitClock()
    # Step losses stay on the device until read back together: reading one waits for the GPU to finish
    # everything queued, so doing it every step would stop the host from queueing the next step.
    unread: list[torch.Tensor] = []
    tic = time.perf_counter()

    def read_losses() -> None:
        """Read the unread step losses back (all processes at once); spread the time since the last read."""
        nonlocal unread, train_seconds, first_step_time, tic
        if not unread:
            return
        # Each entry is (loss, grad norm); the norm is the same on every process (gradients are synced).
        per_process = accelerator.gather(torch.stack(unread)).reshape(accelerator.num_processes, len(unread), 2)
        step_losses = per_process[..., 0].mean(0).tolist()
        grad_norms = per_process[0, :, 1].tolist()
        seconds = time.perf_counter() - tic
        first_step_time = first_step_time or time.time()
        first = progress.global_step - len(unread) + 1
        for step, (step_loss, grad_norm) in enumerate(zip(step_losses, grad_norms), start=first):
            losses.log_step(step, step_loss, seconds / len(step_losses), grad_norm)
            accelerator.log({"train/loss": step_loss, "train/grad_norm": grad_norm}, step=step)
        accelerator.log({"train/lr": scheduler.get_last_lr()[0]}, step=progress.global_step)
        train_seconds += seconds
        bar.set_postfix(loss=f"{step_losses[-1]:.3f}", grad_norm=f"{grad_norms[-1]:.2f}", tok_s=f"{trained_tokens / max(train_seconds, 1e-9):,.0f}")
        unread, tic = [], time.perf_counter()

    def checkpoint() -> Path:
        nonlocal tic
        read_losses()
        progress.loss_log = losses.to_dict()
        saved = save_checkpoint(accelerator, out, progress, train_cfg.save_total_limit, weight_bytes)
        tic = time.perf_counter()  # saving is not training time
        return saved

    net.train()
    try:
        for epoch in range(progress.epoch, num_epochs):
            if progress.global_step >= total_steps:
                break
            start = progress.batches_done_in_epoch if epoch == progress.epoch else 0
            batches.set_position(epoch, start * accelerator.num_processes)
            progress.epoch, progress.batches_done_in_epoch = epoch, start
            micro_losses: list[torch.Tensor] = []
            tic = time.perf_counter()
            for batch in waiting.iterate(loader):
                # Dropout draws are a function of the micro-batch's place in the run, so every micro-batch
                # of an accumulation window draws its own, and a resumed run draws the same.
                torch.manual_seed(micro_batch_seed(train_cfg.seed, epoch, progress.batches_done_in_epoch,
                                                   accelerator.process_index))
                with accelerator.accumulate(net):
                    # Each micro-batch's mean over its masked tokens, averaged over the window by backward():
                    # micro-batches weigh the same whatever their masked-token counts, as in the Trainer
                    # (BERT/RoBERTa forwards take no num_items_in_batch, so it divides by the accumulation).
                    loss = net(**batch)[0].mean()
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        # The norm before clipping is logged; with clipping off the factor is 1, exactly.
                        grad_norm = accelerator.clip_grad_norm_(net.parameters(), train_cfg.max_grad_norm or math.inf)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                micro_losses.append(loss.detach())
                progress.batches_done_in_epoch += 1
                trained_tokens += tokens_per_batch
                if not accelerator.sync_gradients:
                    continue
                # ---- one optimizer step done: log, checkpoint, stop at max steps
                progress.global_step += 1
                unread.append(torch.stack([torch.stack(micro_losses).mean(), grad_norm.float()]))
                micro_losses = []
                bar.update(1)
                # The first step is read at once: it times the start-up (time to first step).
                if progress.global_step == 1 or progress.global_step % options.log_every == 0:
                    read_losses()
                if progress.global_step >= total_steps:
                    break  # the checkpoint below covers this step; the epoch stays unfinished
                if train_cfg.checkpointing_steps and progress.global_step % train_cfg.checkpointing_steps == 0:
                    checkpoint()
            read_losses()  # before the evaluation, whose time is not training time
            # ---- end of epoch: evaluate, checkpoint
            eval_loss = evaluate(net, evals, accelerator)
            record = losses.log_eval(progress.global_step, eval_loss)
            accelerator.log({"eval/loss": eval_loss, "eval/perplexity": record["perplexity"]}, step=progress.global_step)
            log.info("epoch %d: eval loss %.4f, perplexity %.2f", epoch + 1, eval_loss, record["perplexity"])
            if progress.global_step < total_steps or progress.batches_done_in_epoch >= batches_per_epoch:
                # The epoch ran to its end. Stopped by --max-steps it did not: a resume with more steps
                # continues it where it stopped.
                progress.epoch, progress.batches_done_in_epoch = epoch + 1, 0
            checkpoint()
    except KeyboardInterrupt:
        bar.close()
        if progress.global_step == 0:
            raise RunError("interrupted before the first optimizer step; nothing to resume from") from None
        progress.batches_done_in_epoch -= progress.batches_done_in_epoch % train_cfg.gradient_accumulation_steps
        saved = checkpoint()
        raise RunError(f"interrupted at step {progress.global_step}; saved {saved}; continue with --resume auto") from None
    finally:
        bar.close()  # whatever stops the loop, what is printed next starts on a line of its own

    # ---- report (the last evaluation ran at the end of the final epoch), save the model
    results = build_results(
        "pytorch", {**run.to_dict(), "pt": asdict(options)}, data, resolved.name, tokenizer.mask_token,
        info["missing_keys"], losses,
        optimizer_steps=progress.global_step, steps_per_epoch=steps_per_epoch, global_batch=global_batch, precision=options.mixed_precision,
        device=str(accelerator.device), num_processes=accelerator.num_processes,
        train_tokens=trained_tokens, train_seconds=train_seconds, first_step_time=first_step_time,
        data_wait_seconds=waiting.seconds,
    )
    after = results["after"]["eval_loss"]
    if train_seconds > 0:
        log.info("trained %.0f tokens/s; %.1f%% of the step time went to waiting for batches (--loader-workers)",
                 results["train_tokens_per_second"], 100 * waiting.seconds / train_seconds)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(net).model

        def save(folder: Path) -> None:
            unwrapped.save_pretrained(folder, safe_serialization=False)  # see shared.export
            tokenizer.save_pretrained(folder)
            if options.tf_weights:
                add_weights_for_other_framework(folder, have="pt")

        save_model_atomically(out, save, weight_bytes * (2 if options.tf_weights else 1))
        write_run_report(out, results, losses, "pt")
        log.info("after training: eval loss %.4f, perplexity %.2f; saved to %s", after, perplexity(after), out)
        if run.hub.push_to_hub:
            push_folder(out, run.hub, f"pt-mlm: perplexity {perplexity(after):.2f}")
    accelerator.end_training()
    return results

