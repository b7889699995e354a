"""Run one benchmark configuration in this process and write its figures as JSON.

    python -m benchmarks.worker '{"path": "pt-mlm", "precision": "bf16", ...}' WORKLOAD MODEL_DIR OUT_JSON

Run by benchmarks/run.py, one process per configuration and repeat, so TensorFlow and PyTorch never
share a process and every run starts cold (time-to-first-step includes imports and set-up).
"""

from __future__ import annotations

import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import mlm_toolkit.compat
from benchmarks.workloads import Workload
from mlm_toolkit.config import BUILTIN_DATASET, DataConfig, ModelConfig, RunConfig, TrainConfig

START = float(sys.argv[5]) if len(sys.argv) > 5 else time.time()  # when the parent started this process


def run_config(workload: Workload, model: str, out: Path) -> RunConfig:
    return RunConfig(
        DataConfig(dataset=BUILTIN_DATASET, block_size=workload.block_size, max_samples=workload.max_samples),
        ModelConfig(model=model),
        TrainConfig(
            output_dir=str(out),
            per_device_batch_size=workload.batch_size,
            max_steps=workload.total_steps,
            eval_batch_size=32,
        ),
    )


def shared_data(workload: Workload, model: str):
    """Tokenizer and the same blocks and frozen eval masks the toolkit uses, for the reference recipes."""
    from transformers import AutoTokenizer

    from mlm_toolkit.data import prepare_data

    tokenizer = AutoTokenizer.from_pretrained(model)
    return tokenizer, prepare_data(run_config(workload, model, Path(".")).data, tokenizer, seed=42)


def torch_peak_memory() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def tf_peak_memory() -> float | None:
    import tensorflow as tf

    return (
        tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
        if tf.config.list_logical_devices("GPU")
        else None
    )


def step_timer():
    """A `mlm_toolkit.run.RunHooks` recording what the product loop reports: each step's share of
    the measured time, and when the first step's loss was read (time to first step). The loop is timed by
    itself; the benchmark only listens."""
    from mlm_toolkit.run import RunHooks

    class StepTimer(RunHooks):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.first_step_time: float | None = None

        def on_step(self, step: int, loss: float, seconds: float) -> None:
            self.first_step_time = self.first_step_time or time.time()
            self.seconds.append(seconds)

    return StepTimer()


def run_toolkit(path: str, spec: dict, workload: Workload, model: str, out: Path) -> dict:
    """pt-mlm or tf-mlm through their Python API: the product's own loop, timed through its hooks."""
    timer = step_timer()
    if path == "pt-mlm":
        import pt_mlm

        # pt-mlm reads its losses back every few steps and spreads the time over them; reading at the end
        # of the warm-up makes the measured window start on a read.
        flags = {"log_every": workload.warmup_steps, **spec.get("flags", {})}
        options = pt_mlm.PTOptions(mixed_precision=spec["precision"], **flags)
        if options.workarounds:  # what the pt-mlm CLI's process does (process-wide, so not train()'s to do)
            from pt_mlm.compat import keep_freed_memory

            keep_freed_memory()
            mlm_toolkit.compat.trim_imports = True
        results, peak = (pt_mlm.train(run_config(workload, model, out), options, hooks=[timer]), torch_peak_memory())
    else:
        import tf_mlm

        options = tf_mlm.TFOptions(mixed_precision=spec["precision"], **spec.get("flags", {}))
        mlm_toolkit.compat.trim_imports = options.workarounds  # as the tf-mlm CLI's process does
        results, peak = (tf_mlm.train(run_config(workload, model, out), options, hooks=[timer]), tf_peak_memory())
    return {
        "step_seconds": timer.seconds,
        "first_step_time": timer.first_step_time,
        "eval_loss": results.after.eval_loss,
        "peak_gpu_mib": peak,
        "data_wait_seconds": results.data_wait_seconds,
    }  # pt-mlm measures its own; None for Keras


def run_trainer(spec: dict, workload: Workload, model: str, out: Path) -> dict:
    """The guide's PyTorch recipe: transformers.Trainer with DataCollatorForLanguageModeling."""
    import torch
    from transformers import (
        AutoModelForMaskedLM,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    tokenizer, data = shared_data(workload, model)
    seconds, first = [], []

    class Timer(TrainerCallback):
        """Times as pt-mlm times itself: waits for the GPU at step 1, then every `warmup` steps and at the
        end, and spreads each interval over its steps, so neither is timed with a wait per step."""

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 0:
                self.tic, self.unread = time.perf_counter(), 0

        def on_step_end(self, args, state, control, **kwargs):
            self.unread += 1
            step = state.global_step
            if step == 1 or step % workload.warmup_steps == 0 or step == workload.total_steps:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                now = time.perf_counter()
                seconds.extend([(now - self.tic) / self.unread] * self.unread)
                self.tic, self.unread = now, 0
                first.append(first[0] if first else time.time())

    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=workload.batch_size,
        learning_rate=2e-5,
        weight_decay=0.01,
        max_steps=workload.total_steps,
        save_strategy="no",
        report_to=[],
        logging_steps=10**6,
        seed=42,
        bf16=spec["precision"] == "bf16",
        fp16=spec["precision"] == "fp16",
        use_cpu=not torch.cuda.is_available(),
    )
    net = AutoModelForMaskedLM.from_pretrained(model)
    trainer = Trainer(
        model=net,
        args=args,
        train_dataset=data.train_blocks.dataset,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15),
        callbacks=[Timer()],
    )
    trainer.train()
    from pt_mlm.training import MaskedTokenLoss  # after training: the reference's start does not import pt-mlm

    eval_loss = frozen_eval_torch(MaskedTokenLoss(trainer.model), data.eval_inputs)
    return {
        "step_seconds": seconds,
        "first_step_time": first[0],
        "eval_loss": eval_loss,
        "peak_gpu_mib": torch_peak_memory(),
    }


def frozen_eval_torch(net, eval_inputs: dict) -> float:
    import torch

    device = next(net.parameters()).device
    total = count = 0.0
    net.eval()
    with torch.no_grad():
        for start in range(0, len(eval_inputs["input_ids"]), 32):
            batch = {
                k: torch.from_numpy(v[start : start + 32].astype("int64")).to(device) for k, v in eval_inputs.items()
            }
            losses, _ = net(**batch)
            total, count = total + losses.sum().item(), count + len(losses)
    return total / count


def run_keras(spec: dict, workload: Workload, model: str, out: Path) -> dict:
    """The guide's TensorFlow recipe: AdamWeightDecay, compile() with no loss, fit(), no XLA, fp32."""
    from tf_mlm import prepared

    with prepared():  # the Keras 2 environment before TensorFlow and transformers load
        from transformers import AdamWeightDecay, DataCollatorForLanguageModeling, TFAutoModelForMaskedLM
        from transformers.modeling_tf_utils import keras

    from tf_mlm.compat import patch_safetensors_loading

    patch_safetensors_loading()

    tokenizer, data = shared_data(workload, model)
    seconds, first = [], []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.tic = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])
            seconds.append(time.perf_counter() - self.tic)
            first.append(first[0] if first else time.time())

    net = TFAutoModelForMaskedLM.from_pretrained(model)
    net.compile(optimizer=AdamWeightDecay(learning_rate=2e-5, weight_decay_rate=0.01))
    train_set = net.prepare_tf_dataset(
        data.train_blocks.dataset,
        shuffle=True,
        batch_size=workload.batch_size,
        collate_fn=DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, return_tensors="np"),
    )
    net.fit(train_set, epochs=1, steps_per_epoch=workload.total_steps, callbacks=[Timer()], verbose=0)
    from tf_mlm.training import make_evaluator  # after training: the reference's start does not import tf-mlm

    return {
        "step_seconds": seconds,
        "first_step_time": first[0],
        "eval_loss": make_evaluator(net, data.eval_inputs, 32)().loss,
        "peak_gpu_mib": tf_peak_memory(),
    }


def versions() -> dict:
    import importlib.metadata as md

    found = {}
    for package in ("torch", "tensorflow", "transformers", "accelerate", "tf-keras"):
        try:
            found[package] = md.version(package)
        except md.PackageNotFoundError:
            pass
    return found


def main() -> None:
    spec, workload = json.loads(sys.argv[1]), Workload(**json.loads(sys.argv[2]))
    model, out_file = sys.argv[3], Path(sys.argv[4])
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "run"
        if spec["path"] in ("pt-mlm", "tf-mlm"):
            results = run_toolkit(spec["path"], spec, workload, model, out)
        elif spec["path"] == "trainer":
            results = run_trainer(spec, workload, model, out)
        else:
            results = run_keras(spec, workload, model, out)
    steps = results["step_seconds"]
    record = {
        "spec": spec,
        "step_seconds": steps,
        "warm_step_seconds": steps[workload.warmup_steps : workload.total_steps],
        "time_to_first_step": results["first_step_time"] - START,
        "eval_loss_after": results["eval_loss"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mib": results.get("peak_gpu_mib"),
        "data_wait_seconds": results.get("data_wait_seconds"),
        "versions": versions(),
        "python": platform.python_version(),
    }
    out_file.write_text(json.dumps(record))


if __name__ == "__main__":
    main()
