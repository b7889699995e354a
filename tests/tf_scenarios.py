"""TensorFlow scenarios, each run in its own child process by tests/test_tf_train.py.

`python tests/tf_scenarios.py NAME MODEL DATA WORKDIR` prints one JSON object with what it saw.
Kept out of the pytest process so TensorFlow and PyTorch never share one.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tf_mlm import prepare

prepare()  # this script's modules import tf_mlm.training: the Keras 2, TF-only environment first  # noqa: E402

from mlm_toolkit.compat import transformers_without_sklearn  # noqa: E402
from tf_mlm.compat import patch_safetensors_loading  # noqa: E402

transformers_without_sklearn()  # as in the CLI's process (and the warm server's)

patch_safetensors_loading()  # the scenarios load PyTorch safetensors into TF models directly too
from mlm_toolkit.config import DataConfig, ModelConfig, RunConfig, TrainConfig

TINY = dict(block_size=32)


def tiny_run(model: str, data: str, out: Path, **train) -> RunConfig:
    return RunConfig(
        DataConfig(dataset=data, **TINY),
        ModelConfig(model=model),
        TrainConfig(
            **{
                "output_dir": str(out),
                "learning_rate": 1e-3,
                "per_device_batch_size": 8,
                "eval_batch_size": 32,
                **train,
            }
        ),
    )


def tf_options(**settings):
    """TensorFlow weights only: the conversion to PyTorch is tested on the CLI runs (tests/test_tf_train.py)."""
    from tf_mlm import TFOptions

    return TFOptions(**{"pt_weights": False, **settings})


def crash_at_epoch_2():
    """A Keras callback raising as the second epoch begins: a fit stopped with a backup behind it."""
    from transformers.modeling_tf_utils import keras

    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("simulated crash at epoch 2")

    return Crash()


def xla_and_precision(model: str, data: str, work: Path) -> dict:
    """Our loss gives the same figure with and without XLA and trains under it; bf16 evaluates like fp32 and
    trains; ours and the model's own loss pick the right logits under each policy."""
    import numpy as np
    import tensorflow as tf
    from transformers import AutoTokenizer, TFAutoModelForMaskedLM
    from transformers.modeling_tf_utils import keras

    from mlm_toolkit.data import prepare_data
    from tf_mlm.training import make_evaluator, train

    tokenizer = AutoTokenizer.from_pretrained(model)
    data_ = prepare_data(DataConfig(dataset=data, **TINY), tokenizer, seed=42)
    evals = {}
    for policy in ("float32", "mixed_bfloat16"):
        keras.mixed_precision.set_global_policy(policy)
        net = TFAutoModelForMaskedLM.from_pretrained(model)
        evals[policy] = make_evaluator(net, data_.eval_inputs, 32)().loss
    # Ours (sparse and dense) and the model's own loss under each policy, on a vocabulary of 4,096: label ids
    # beyond what fp16 and bf16 represent exactly (2,048 and 256) must still pick the right logits.
    from transformers import BertConfig

    from tf_mlm.heads import masked_rows, masked_token_loss_sum

    draw = np.random.default_rng(0)
    big_ids = draw.integers(5, 4096, size=(8, 32))
    big_labels = np.where(draw.random(big_ids.shape) < 0.15, big_ids, -100)
    big = BertConfig(vocab_size=4096, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    internal = {}
    for policy in ("float32", "mixed_float16", "mixed_bfloat16"):
        keras.mixed_precision.set_global_policy(policy)
        keras.utils.set_random_seed(0)  # the same weights under every policy
        net = TFAutoModelForMaskedLM.from_config(big)
        net(input_ids=big_ids[:1])
        # Odd ids 20 above even ones: an odd label rounded to its even neighbour (fp16 above 2,048) costs 20.
        net.get_lm_head().bias.assign(np.arange(4096) % 2 * 20.0)
        internal[policy] = [float(np.mean(net(input_ids=big_ids, labels=big_labels, training=False).loss))]
        for sparse in (True, False):
            total, count, _ = masked_token_loss_sum(net, big_ids, big_labels, False, sparse=sparse)
            internal[policy].append(float(total / count))
    keras.mixed_precision.set_global_policy("float32")
    mixed = train(
        tiny_run(model, data, work / "bf16", max_steps=6), tf_options(mixed_precision="mixed_bfloat16")
    ).to_dict()
    # The sparse head (default; exact rows without XLA, fixed rows with it) trains like the dense model.
    heads = {
        name: train(tiny_run(model, data, work / name, max_steps=6), options).loss_log["losses"]
        for name, options in (
            ("sparse", tf_options()),
            ("dense", tf_options(sparse_head=False)),
            ("sparse_xla", tf_options(jit_compile=True)),
        )
    }
    net = TFAutoModelForMaskedLM.from_pretrained(model)
    ids, labels = data_.eval_inputs["input_ids"][:8], data_.eval_inputs["labels"][:8]
    exact = masked_token_loss_sum(net, ids, labels, training=False)
    fixed = tf.function(masked_token_loss_sum, jit_compile=True)(net, ids, labels, False, masked_rows(ids.size, 0.15))
    rows = {"exact": [float(exact[0]), float(exact[1])], "fixed_xla": [float(fixed[0]), float(fixed[1])]}
    return {
        "eval": evals,
        "rows": rows,
        "internal": internal,
        "max_label": int(big_labels.max()),
        "mixed_before": mixed["before"]["eval_loss"],
        "mixed_after": mixed["after"]["eval_loss"],
        "heads": heads,
    }


def interrupted_fit(model: str, data: str, work: Path) -> dict:
    """An exception from a callback at epoch 2 stops fit; --resume auto finishes the run."""
    from tf_mlm.training import train

    whole = train(tiny_run(model, data, work / "whole", num_epochs=2), tf_options()).to_dict()
    out = work / "crashed"
    try:
        train(tiny_run(model, data, out, num_epochs=2), tf_options(), callbacks=[crash_at_epoch_2()])
        crashed = False
    except RuntimeError:
        crashed = True
    backup_left = (out / "backup").is_dir() and any((out / "backup").iterdir())
    from mlm_toolkit.errors import UsageError

    refused = {}  # a resume that would be another run is refused, naming the setting
    for name, changed in (
        ("block", dict(block_size=16)),
        ("rate", dict(learning_rate=2e-3)),
        ("steps", dict(max_steps=1)),
    ):
        try:
            config = tiny_run(model, data, out, num_epochs=2, resume="auto")
            for key, value in changed.items():
                setattr(config.data if key == "block_size" else config.train, key, value)
            train(config, tf_options())
            refused[name] = "not refused"
        except UsageError as error:
            refused[name] = str(error)
    resumed = train(tiny_run(model, data, out, num_epochs=2, resume="auto"), tf_options()).to_dict()
    finished = train(tiny_run(model, data, out, num_epochs=2, resume="auto"), tf_options()).to_dict()
    return {
        "crashed": crashed,
        "backup_left": backup_left,
        "refused": refused,
        "finished_untouched": finished == json.loads((out / "all_results.json").read_text()),
        "whole_steps": whole["optimizer_steps"],
        "resumed_steps": resumed["optimizer_steps"],
        "resumed_evals": [e["step"] for e in resumed["loss_log"]["evals"]],
        "whole_after": whole["after"]["eval_loss"],
        "resumed_after": resumed["after"]["eval_loss"],
        "whole_losses": whole["loss_log"]["losses"],
        "resumed_losses": resumed["loss_log"]["losses"],
    }


def bad_inputs(model: str, data: str, work: Path) -> dict:
    """Exit code and message of each bad invocation of `tf-mlm train`."""
    from click.testing import CliRunner
    from tiny_models import non_finite_copy, not_utf8

    from tf_mlm import main

    existing = work / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("a previous run")
    non_finite = non_finite_copy(Path(model), work)
    base = ["train", "--model", model, "--dataset", data, "--block-size", "32"]
    cases = {
        "existing_output": base + ["--output-dir", str(existing)],
        "precision": base + ["--output-dir", str(work / "b"), "--mixed-precision", "fp16"],
        "resume_without_backup": base + ["--output-dir", str(work / "c"), "--resume", "auto"],
        "xla_multi_worker": base + ["--output-dir", str(work / "e"), "--strategy", "multi-worker", "--jit-compile"],
        "block_size": [
            "train",
            "--model",
            model,
            "--dataset",
            data,
            "--block-size",
            "4096",
            "--output-dir",
            str(work / "d"),
        ],
        "no_mask": ["fill-mask", model, "nothing to fill"],
        "diverged": base + ["--output-dir", str(work / "h"), "--max-steps", "6", "--learning-rate", "1e6"],
        "non_finite_evaluate": ["evaluate", str(non_finite), "--dataset", data, "--block-size", "32"],
        "non_finite_fill_mask": ["fill-mask", str(non_finite), "the cat <mask> the ball."],
        "non_finite_train": ["train", "--model", str(non_finite), "--dataset", data, "--output-dir", str(work / "i")],
        "not_utf8": [
            "train",
            "--model",
            model,
            "--dataset",
            str(not_utf8(Path(data), work)),
            "--output-dir",
            str(work / "g"),
        ],
    }
    from tiny_models import BROKEN_MODELS, broken_copy

    for how, _ in BROKEN_MODELS:  # the same unusable folders as the PyTorch path's test
        cases[how] = [
            "train",
            "--model",
            str(broken_copy(Path(model), work, how)),
            "--dataset",
            data,
            "--block-size",
            "32",
            "--output-dir",
            str(work / "f"),
        ]
    seen = {}
    for name, args in cases.items():
        result = CliRunner().invoke(main, args)
        seen[name] = {
            "exit": result.exit_code,
            "output": result.output.strip().splitlines()[-1] if result.output.strip() else "",
        }
    seen["existing_kept"] = (existing / "keep.txt").read_text() == "a previous run"
    seen["diverged_saved"] = sorted(path.name for path in (work / "h").iterdir())
    return seen


def schedules(model: str, data: str, work: Path) -> dict:
    """tf-mlm's learning rate at each step, for every --lr-scheduler (warm-up 3, 20 steps)."""
    from tf_mlm.training import make_optimizer

    rates = {}
    for name in ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"):
        optimizer = make_optimizer(TrainConfig(learning_rate=1e-3, lr_scheduler=name), 20, warmup_steps=3)
        rates[name] = [float(optimizer.learning_rate(step)) for step in range(20)]
    return rates


def stopped_fit(model: str, data: str, work: Path) -> dict:
    """A fit backed up every 20 steps and stopped by an exception at epoch 2 (step 53), leaving its Keras
    backup of step 40 in WORK/stopped/backup and the one of step 20 in backup-previous."""
    from tf_mlm.training import train

    run = tiny_run(model, data, work / "stopped", num_epochs=3, checkpointing_steps=20)
    try:
        train(run, tf_options(), callbacks=[crash_at_epoch_2()])
    except RuntimeError as error:
        return {"stopped": str(error)}
    return {"stopped": None}


def push_to_hub(model: str, data: str, work: Path) -> dict:
    """--push-to-hub with the Hub replaced by recorders, under each --hub-strategy: PushToHubCallback during
    fit, the folder after."""
    import huggingface_hub
    import transformers.keras_callbacks as keras_callbacks

    import mlm_toolkit.hub as publish
    from mlm_toolkit.config import HubConfig
    from tf_mlm.training import train

    calls: dict = {"pushes": []}

    class FakeRepository:  # what the callback clones into and pushes from
        def __init__(self, local_dir, clone_from, token=None):
            Path(local_dir).mkdir(parents=True, exist_ok=True)
            calls["clone"] = clone_from

        def push_to_hub(self, commit_message, blocking=True, **_):
            calls["pushes"].append(commit_message)
            return None, None

    class FakeApi:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, private, exist_ok):
            calls["repo"] = repo_id

        def upload_folder(self, repo_id, folder_path, commit_message, ignore_patterns):
            from huggingface_hub.utils import filter_repo_objects  # what the real upload_folder filters with

            files = [p.relative_to(folder_path).as_posix() for p in Path(folder_path).rglob("*") if p.is_file()]
            calls["uploaded"] = sorted(filter_repo_objects(files, ignore_patterns=ignore_patterns))
            calls["upload_message"] = commit_message

    keras_callbacks.create_repo = lambda repo_id, exist_ok, token=None: type("Repo", (), {"repo_id": repo_id})()
    keras_callbacks.Repository = FakeRepository
    huggingface_hub.HfApi, huggingface_hub.get_token = FakeApi, lambda: "hf_fake"
    publish.hub_offline_reason = lambda: None
    seen = {}
    for strategy in ("every_save", "end"):
        calls.clear()
        calls["pushes"] = []
        run = tiny_run(model, data, work / strategy, num_epochs=2)
        run.data.max_samples = 60  # 2 short epochs
        run.hub = HubConfig(push_to_hub=True, hub_model_id="me/tiny-tf", hub_token="hf_given", hub_strategy=strategy)
        train(run, tf_options())  # the folder is uploaded whole: PyTorch weights would be in it too
        hub = work / strategy / "hub"  # the callback's clone
        card = hub / "README.md"
        seen[strategy] = {
            **calls,
            "callback_saved": sorted(p.name for p in hub.iterdir()) if hub.is_dir() else [],
            "card": card.read_text() if card.is_file() else "",
        }
    return seen


def use_torch_adam_epsilon() -> None:
    """Keras' Adam adds epsilon to sqrt(v) before the bias correction, PyTorch's after it: Keras' epsilon
    is in effect epsilon * sqrt(1 - beta2^t) of PyTorch's. Switching Keras to PyTorch's placement shows
    that this is the whole of the difference between the two optimizers."""
    from transformers.optimization_tf import AdamWeightDecay

    keras_prepare = AdamWeightDecay._prepare_local

    def torch_placement(self, var_device, var_dtype, apply_state):
        keras_prepare(self, var_device, var_dtype, apply_state)
        coefficients = apply_state[(var_device, var_dtype)]
        coefficients["epsilon"] = coefficients["epsilon"] * tf.sqrt(1 - coefficients["beta_2_power"])

    import tensorflow as tf

    AdamWeightDecay._prepare_local = torch_placement


def same_batches(model: str, batches_file: str, work: Path) -> dict:
    """tf-mlm's train step and the guide's Keras recipe (the model's own train step, compile without a
    loss, fit) on the very batches in `batches_file`, in order, from the same weights. Returns both step
    losses, their largest weight difference, and tf-mlm's logits on the probe batch."""
    import numpy as np
    import tensorflow as tf
    from transformers import TFAutoModelForMaskedLM, create_optimizer
    from transformers.modeling_tf_utils import keras

    from mlm_toolkit.run import StepPlan
    from tf_mlm.training import TFOptions, compile_trainee

    if os.environ.get("TORCH_ADAM_EPSILON"):
        use_torch_adam_epsilon()
    arrays = dict(np.load(batches_file))
    steps, batch = int(arrays["steps"]), int(arrays["batch"])
    lr, max_grad_norm = float(arrays["lr"]), float(arrays["max_grad_norm"])
    examples = {"input_ids": arrays["input_ids"], "labels": arrays["labels"]}

    def in_order():
        return tf.data.Dataset.from_tensor_slices(examples).batch(batch)

    class StepLosses(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.losses, self.norms = [], []

        def on_train_batch_end(self, step, logs=None):
            self.losses.append(float(logs["loss"]))  # tf-mlm's train step reports the step's own loss
            self.norms.append(float(logs["grad_norm"]))

    run = tiny_run(
        model,
        "unused",
        work / "unused",
        max_steps=steps,
        max_grad_norm=max_grad_norm,
        learning_rate=lr,
        per_device_batch_size=batch,
    )
    ours = TFAutoModelForMaskedLM.from_pretrained(model)
    plan = StepPlan.make(steps, 1, batch, run.train)
    trainee = compile_trainee(ours, run, TFOptions(), plan)
    ours_log = StepLosses()
    trainee.fit(in_order(), epochs=1, callbacks=[ours_log], verbose=0)

    result = {"ours": ours_log.losses, "ours_norms": ours_log.norms}
    np.save(work / "tf_probe_logits.npy", ours(input_ids=arrays["probe"], training=False).logits.numpy())
    if max_grad_norm:  # the guide's Keras code does not clip
        return result
    reference = TFAutoModelForMaskedLM.from_pretrained(model)
    # The guide's Keras code, with the schedule and decay exclusions of transformers' TF examples
    # (create_optimizer), which are the Trainer's; no clipping, as the guide.
    optimizer, _ = create_optimizer(init_lr=lr, num_train_steps=steps, num_warmup_steps=0, weight_decay_rate=0.01)
    reference.compile(optimizer=optimizer, run_eagerly=True)  # eager, so each step's own loss can be read
    reference_losses, compute_loss = [], reference.hf_compute_loss

    def recording_loss(*args, **kwargs):  # Keras only reports the epoch's running mean
        loss = compute_loss(*args, **kwargs)
        reference_losses.append(float(tf.reduce_mean(loss)))
        return loss

    reference.hf_compute_loss = recording_loss
    reference.fit(in_order(), epochs=1, verbose=0)

    weight_diff = max(
        float(np.max(np.abs(a.numpy() - b.numpy())))
        for a, b in zip(ours.trainable_variables, reference.trainable_variables, strict=True)
    )
    moved = max(
        float(np.max(np.abs(a.numpy() - b.numpy())))
        for a, b in zip(
            ours.trainable_variables, TFAutoModelForMaskedLM.from_pretrained(model).trainable_variables, strict=True
        )
    )
    return {**result, "reference": reference_losses, "weight_diff": weight_diff, "moved": moved}


def streamed_fit_resumed(model: str, data: str, work: Path) -> dict:
    """--streaming in Keras: a fit backed up every 4 steps dies after step 10; resumed, it finishes 16 steps.
    Returns the stream position its step-8 backup saved, the position a fresh stream has after 8 batches,
    and the finished run's loss log."""
    from transformers import AutoTokenizer
    from transformers.modeling_tf_utils import keras

    from mlm_toolkit.streaming import BlockStream, prepare_stream
    from tf_mlm.training import train

    class DieAfterStep10(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == 10:
                raise RuntimeError("simulated crash after step 10")

    out = work / "streamed"
    run = lambda steps, resume=None: tiny_run(  # noqa: E731
        model, data, out, max_steps=steps, checkpointing_steps=4, resume=resume
    )
    first = run(16)
    first.data.streaming, first.data.max_eval_samples = True, 20
    try:
        train(first, tf_options(), callbacks=[DieAfterStep10()])
    except RuntimeError as error:
        assert "simulated crash" in str(error)
    saved = json.loads((out / "backup" / "stream.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(model)
    stream_data = prepare_stream(first.data, tokenizer, 42)
    fresh = BlockStream(lambda: stream_data.open_train(0, 1), tokenizer, first.data)
    fresh_blocks = iter(fresh)
    for _ in range(8 * 8):
        next(fresh_blocks)
    position_after_8 = fresh.position.to_dict()
    block_65 = next(fresh_blocks)[0].tolist()

    given_first, iterate = [], BlockStream.__iter__

    def recording(self):  # the first block the resumed run's stream gives
        for item in iterate(self):
            if not given_first:
                given_first.append(item[0].tolist())
            yield item

    BlockStream.__iter__ = recording
    again = run(16, "auto")
    again.data.streaming, again.data.max_eval_samples = True, 20
    results = train(again, tf_options())
    return {
        "saved": saved,
        "fresh": position_after_8,
        "resumed_with_block_65": given_first[0] == block_65,
        "steps": results.loss_log["steps"],
    }


def copy_at_step(step: int, out: Path, copy: Path):
    """A Keras callback copying the output folder once step `step` is backed up: what a crash there leaves."""
    import shutil

    from transformers.modeling_tf_utils import keras

    class CopyAt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == step:
                shutil.copytree(out, copy, ignore=shutil.ignore_patterns(".lock"))

    return CopyAt()


def model_matrix(models: str, data: str, work: Path) -> dict:
    """For each tiny family folder of `models` (comma-separated): a fit of 2 steps, backed up each step; a crash
    after step 1 resumed from that backup; evaluate and fill-mask on the result; the sparse and dense losses of
    one batch; and the logits of a fixed input, for the PyTorch side to compare once converted (it converts the
    weights exported beside each run and runs the pipeline)."""
    import numpy as np
    import tensorflow as tf
    from safetensors.numpy import save_file
    from transformers import AutoConfig, AutoTokenizer

    import tf_mlm
    import tf_mlm.heads
    from mlm_toolkit.config import EvalConfig
    from mlm_toolkit.convert import keras_weights
    from mlm_toolkit.data import prepare_data
    from mlm_toolkit.errors import UsageError
    from tf_mlm.heads import MaskedLMTrainer, masked_token_loss_sum, sparse_head_differs
    from tf_mlm.training import KerasBackend, train

    traces, step = [], MaskedLMTrainer.train_step  # each Python call of the step is a trace of it
    MaskedLMTrainer.train_step = lambda self, data: traces.append(1) or step(self, data)
    refusals, plain = [], tf_mlm.heads.loss_sum  # each plain trace refused for a branch on a tensor

    def counted(*args, **kwargs):
        try:
            return plain(*args, **kwargs)
        except tf.errors.OperatorNotAllowedInGraphError:
            refusals.append(1)
            raise

    tf_mlm.heads.loss_sum = counted
    seen = {}
    for folder in models.split(","):
        family, out = Path(folder).name, work / Path(folder).name
        run = tiny_run(folder, data, out, max_steps=2, checkpointing_steps=1)
        run.data.max_samples = 60  # 2 steps: fewer rows to read and evaluate
        try:  # the check a run with PyTorch weights makes before training (the test converts them itself)
            KerasBackend(tf_options(pt_weights=True)).check_model(AutoConfig.from_pretrained(folder))
        except UsageError as refused:
            seen[family] = {"refused": str(refused)}
            continue
        crashed = work / f"{family}-crashed"
        traces.clear(), refusals.clear()
        results = train(run, tf_options(), callbacks=[copy_at_step(1, out, crashed)])
        step_traces, plain_refused = len(traces), len(refusals)
        again = tiny_run(folder, data, crashed, max_steps=2, checkpointing_steps=1, resume="auto")
        again.data = run.data
        resumed = train(again, tf_options())
        evaluated = tf_mlm.evaluate(EvalConfig(ModelConfig(model=str(out)), run.data))
        filler = tf_mlm.MaskFiller(str(out))
        filled, model = filler("the cat <mask> the ball.", top_k=2), filler.model
        batch = prepare_data(run.data, AutoTokenizer.from_pretrained(out), seed=42).eval_inputs
        batch = {key: value[:4] for key, value in batch.items()}
        sums = [
            masked_token_loss_sum(model, batch["input_ids"], batch["labels"], False, sparse=sparse)[0]
            for sparse in (True, False)
        ]
        seen[family] = {
            "steps": results.loss_log["steps"],
            "step_traces": step_traces,
            "plain_refused": plain_refused,
            "losses": results.loss_log["losses"],
            "resumed_losses": resumed.loss_log["losses"],
            "resumed_after": resumed.after.eval_loss,
            "before": results.before.eval_loss,
            "after": results.after.eval_loss,
            "evaluated": evaluated.eval_loss,
            "filled": [p["token_str"] for p in filled],
            "sparse_differs": sparse_head_differs(model, batch),
            "sparse_loss": float(sums[0]),
            "dense_loss": float(sums[1]),
            "probe_ids": batch["input_ids"][:1].tolist(),
            "logits": np.asarray(model(input_ids=batch["input_ids"][:1]).logits)[0, :4].tolist(),
        }
        save_file(keras_weights(model), str(work / f"{family}.keras-weights.safetensors"))  # for the conversion
    # The families' PyTorch model.safetensors were read into TensorFlow without torch in this process.
    seen["torch imported"] = "torch" in sys.modules
    return seen


if __name__ == "__main__":
    name, model, data, work = sys.argv[1:5]
    print("RESULT " + json.dumps(globals()[name](model, data, Path(work))))
