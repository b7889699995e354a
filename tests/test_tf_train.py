"""`tf-mlm` end to end. Every TensorFlow step runs in a child process (tests/tf_scenarios.py or the
CLI), so this file can share a pytest process with the PyTorch tests."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import warm
from tiny_models import BROKEN_MODELS, TINY_ARGS, train_command

pytestmark = pytest.mark.tf
HERE = Path(__file__).parent
TF_ONLY = "--no-pt-weights"  # no conversion to PyTorch (a PyTorch process each): the `trained` run tests it


def child_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("USE_TF", "USE_TORCH")}
    return {**env, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE)])}


def tf_child(*argv, cold: bool = False, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """`python ARGV...` in a TensorFlow process of its own: warm (forked with TensorFlow imported, see warm.py),
    or `cold`, a fresh interpreter, where what start-up does is tested (or an import reads `env`)."""
    argv, env = [str(a) for a in argv], {**child_env(), **env}
    if cold:
        return subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True, timeout=timeout)
    return warm.run("tf", argv, env, timeout=timeout)


def scenario(name: str, model: Path, data: Path, work: Path, **env: str) -> dict:
    cold = "USE_TORCH" in env  # read as transformers is imported
    done = tf_child(HERE / "tf_scenarios.py", name, model, data, work, cold=cold, **env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])


def tf_mlm(*args, cold: bool = False) -> subprocess.CompletedProcess:
    return tf_child("-m", "tf_mlm", *args, cold=cold)


@pytest.fixture(scope="module")
def trained(tiny_roberta, eli5_jsonl, tmp_path_factory):
    out = tmp_path_factory.mktemp("tf-run") / "out"
    done = tf_mlm(  # the second epoch cut short: the progress it prints is tested too
        *train_command(tiny_roberta, eli5_jsonl, out), "--num-epochs", "1.5", "--log-every", "4"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out, json.loads((out / "all_results.json").read_text()), done.stdout + done.stderr


# The first 6 step losses of the `trained` run (tiny one-layer RoBERTa, seed 42, graph mode), recorded 2026-12-07 on
# an AVX2 EPYC (TensorFlow 2.21), with Keras reading the blocks in pt-mlm's seeded order, each block masked from its
# place, and dropout drawn from generators (an exact resume). Equal to float32's reach across CPUs (1e-5
# relative: a few ulp a product over 6 steps); changed only by a commit that says why what the CLI learns changed.
GOLDEN_TF_LOSSES = [5.70591402053833, 5.690181255340576, 5.640552043914795, 5.6084723472595215, 5.557895183563232,
                    5.568026542663574]  # fmt: skip


def test_the_cli_learns_the_golden_losses(trained):
    np.testing.assert_allclose(trained[1]["loss_log"]["losses"][:6], GOLDEN_TF_LOSSES, rtol=1e-5)


def test_cli_run_lowers_eval_loss_and_saves_for_both_frameworks(trained):
    out, results, _ = trained
    assert results["after"]["eval_loss"] < results["before"]["eval_loss"] - 0.5
    per_epoch = results["data"]["train_blocks"] // 8  # whole batches only
    assert results["optimizer_steps"] == -(-3 * per_epoch // 2)
    for name in ("tf_model.h5", "pytorch_model.bin", "tokenizer.json", "README.md", "loss_curve.png"):
        assert (out / name).is_file(), name
    assert not (out / "backup").exists(), "a finished fit leaves no backup behind"


def test_a_log_shows_progress_every_log_every_steps_and_the_epoch_cut_short(trained):
    _, results, output = trained
    steps, per_epoch = results["optimizer_steps"], results["steps_per_epoch"]
    progress = [line for line in output.splitlines() if " step " in line and " ETA " in line]
    assert [int(line.split(" step ")[1].split("/")[0]) for line in progress] == [1, *range(4, steps + 1, 4)]
    assert f"step 4/{steps} (epoch {round(4 / per_epoch, 2):g}): loss" in progress[1]
    cut = steps - per_epoch  # the second epoch's steps: Keras' line counts them, not the full epoch's
    assert f"\n{per_epoch}/{per_epoch} - " in output and f"\n{cut}/{cut} - " in output
    assert "epoch 1: eval loss" in output and f"epoch {round(steps / per_epoch, 2):g}: eval loss" in output
    for stage in ("saving the model and tokenizer", "weights to pytorch_model.bin", "writing the model card"):
        assert stage in output


def test_tensorflows_start_up_noise_does_not_reach_the_user(trained):
    from tf_mlm.compat import NATIVE_NOISE

    _, _, train_output = trained
    # A user's start-up (the same as train's: the first use of the API imports TensorFlow); the devices are first
    # listed as it predicts. The warm `trained` run shows what a run prints after its start. The built-in model
    # (PyTorch weights, a fresh head) in TensorFlow. The CLI's process imports transformers without scikit-learn
    # (docs/compat.md): the child says at its end what it imported.
    said = "import atexit, sys; atexit.register(lambda: print('sklearn imported:', 'sklearn' in sys.modules))"
    run_cli = "import runpy, sys; sys.argv[0] = 'tf-mlm'; runpy.run_module('tf_mlm', run_name='__main__')"
    filled = tf_child("-c", f"{said}\n{run_cli}", "fill-mask", "builtin:minilm", "the cat [MASK] the ball.", cold=True)
    assert filled.returncode == 0, filled.stderr[-3000:]
    assert "sklearn imported: False" in filled.stdout
    fill_output = filled.stdout + filled.stderr
    for output, own_line in ((train_output, "before training: eval loss"), (fill_output, "rank")):
        assert own_line in output  # the command's own lines do
        assert [line for line in output.splitlines() if any(noise in line for noise in NATIVE_NOISE)] == []


def test_evaluate_gives_the_same_figure_in_both_frameworks(trained, eli5_jsonl):
    from pt_helpers import run_cli

    out, results, _ = trained
    args = ["evaluate", out, "--dataset", eli5_jsonl, "--block-size", "32", "--json"]
    keras = tf_mlm(*args)
    assert keras.returncode == 0, keras.stderr[-2000:]
    pytorch = run_cli(*args)
    assert pytorch.exit_code == 0, pytorch.output
    tf_loss, pt_loss = json.loads(keras.stdout)["eval_loss"], json.loads(pytorch.stdout)["eval_loss"]
    assert tf_loss == pytest.approx(results["after"]["eval_loss"], rel=1e-5), "the run's own figure"
    assert pt_loss == pytest.approx(tf_loss, rel=1e-5), "the same figure in PyTorch, from pytorch_model.bin"
    tf_accuracy, pt_accuracy = json.loads(keras.stdout)["accuracy"], json.loads(pytorch.stdout)["accuracy"]
    assert tf_accuracy == pytest.approx(results["after"]["accuracy"], abs=1e-9) and 0 < tf_accuracy <= 1
    assert pt_accuracy == pytest.approx(tf_accuracy, abs=1e-3), "the same argmax, but for near ties"


def test_tf_and_pytorch_give_the_same_top_k(trained):
    from transformers import pipeline

    out, _, _ = trained
    texts = ["the cat sees <mask> ball.", "my friend <mask> a book"]
    done = tf_mlm("fill-mask", out, *texts, "--top-k", "5", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    tf_top = [[p["token"] for p in item["masks"][0]] for item in json.loads(done.stdout)]
    fill = pipeline("fill-mask", model=str(out), device="cpu")  # PyTorch, from pytorch_model.bin
    assert tf_top == [[p["token"] for p in fill(t, top_k=5)] for t in texts]
    targets = ["Ġthe", "Ġthen", "Ġhappy", "zebra"]
    done = tf_mlm("fill-mask", out, texts[0], *(f"--target={t}" for t in targets), "--top-k", "3", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    tf_top = [p["token"] for p in json.loads(done.stdout)[0]["masks"][0]]
    assert tf_top == [p["token"] for p in fill(texts[0], top_k=3, targets=targets)]


def test_tf_and_pytorch_paths_measure_the_same_perplexity_before_training(trained, tiny_roberta, eli5_jsonl, tmp_path):
    from pt_helpers import train_tiny

    _, tf_results, _ = trained
    pt_results = train_tiny(tiny_roberta, eli5_jsonl, tmp_path / "pt", "--max-steps", "1")
    assert tf_results["before"]["eval_loss"] == pytest.approx(pt_results["before"]["eval_loss"], rel=1e-4)


def test_padded_whole_word_examples_measure_the_same_in_both_frameworks_and_train(tiny_roberta, eli5_jsonl, tmp_path):
    """--line-by-line --whole-word-masking in Keras: the same frozen masks and attention masks as PyTorch
    (the same perplexity before training), and the loss falls."""
    from pt_helpers import train_tiny

    flags = ["--line-by-line", "--whole-word-masking"]
    out = tmp_path / "tf"
    done = tf_mlm(*train_command(tiny_roberta, eli5_jsonl, out, TF_ONLY), "--num-epochs", "3", *flags)
    assert done.returncode == 0, done.stderr[-3000:]
    tf_results = json.loads((out / "all_results.json").read_text())
    pt_results = train_tiny(tiny_roberta, eli5_jsonl, tmp_path / "pt", "--max-steps", "1", *flags)
    assert tf_results["before"]["eval_loss"] == pytest.approx(pt_results["before"]["eval_loss"], rel=1e-4)
    assert tf_results["after"]["eval_loss"] < tf_results["before"]["eval_loss"] - 0.5
    assert tf_results["data"]["eval_blocks"] == pt_results["data"]["eval_blocks"] == 40


def test_a_streamed_keras_fit_backs_up_the_exact_stream_position_and_resumes(tiny_roberta, eli5_jsonl, tmp_path):
    seen = scenario("streamed_fit_resumed", tiny_roberta, eli5_jsonl, tmp_path)
    assert seen["saved"] == seen["fresh"], "the backup of step 8 holds the stream after 8 batches of 8"
    assert seen["saved"]["given"] == 64 and seen["resumed_with_block_65"]
    assert seen["steps"] == list(range(1, 17)), "resumed at step 8: steps 9 and 10 retrained, once each"


def read_tensorboard(folder: Path) -> dict[str, dict[int, float]]:
    """Every scalar of the one TensorBoard run below `folder`, by tag and step."""
    from mlm_toolkit.trackers import tensorboard_without_tensorflow

    tensorboard_without_tensorflow()  # this pytest process is PyTorch's
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = {p.parent for p in folder.rglob("events.out.tfevents*")}
    scalars = {}
    for run in runs:
        events = EventAccumulator(str(run))
        events.Reload()
        for tag in events.Tags()["scalars"]:
            scalars[tag] = {e.step: e.value for e in events.Scalars(tag)}
    return scalars


def read_mlflow(uri: str, experiment: str) -> dict[str, dict[int, float]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return {
        key: {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)} for key in run.data.metrics
    }


def test_both_paths_report_the_same_tags_at_the_same_steps_to_tensorboard_and_mlflow(
    tiny_roberta, eli5_jsonl, tmp_path, monkeypatch
):
    from pt_helpers import train_tiny

    store = f"file://{tmp_path / 'mlruns'}"
    env = {"MLFLOW_TRACKING_URI": store, "MLFLOW_ALLOW_FILE_STORE": "true"}
    flags = ["--max-steps", "6", "--eval-steps", "3", "--report-to", "tensorboard,mlflow"]
    done = tf_child("-m", "tf_mlm", *train_command(tiny_roberta, eli5_jsonl, tmp_path / "tf", TF_ONLY), *flags, **env)
    assert done.returncode == 0, done.stderr[-3000:]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    pt = train_tiny(tiny_roberta, eli5_jsonl, tmp_path / "pt", *flags)
    tags = {"train/loss", "train/learning_rate", "train/grad_norm", "eval/loss", "eval/perplexity"}
    for name, figures in (("pt", pt), ("tf", json.loads((tmp_path / "tf" / "all_results.json").read_text()))):
        for logged in (read_tensorboard(tmp_path / name / "runs"), read_mlflow(store, f"{name}-mlm")):
            assert tags <= set(logged), (name, sorted(logged))
            assert sorted(logged["eval/loss"]) == [0, 3, 6], "before training, every 3 steps and at the end"
            assert sorted(logged["train/loss"]) == sorted(logged["train/learning_rate"]) == list(range(1, 7))
            assert [logged["train/loss"][s] for s in range(1, 7)] == pytest.approx(figures["loss_log"]["losses"])
            evals = {e["step"]: e["eval_loss"] for e in figures["loss_log"]["evals"]}
            assert logged["eval/loss"] == pytest.approx(evals)
    # The same schedule in both: the learning rate after each step, as the Trainer logs it.
    assert read_tensorboard(tmp_path / "tf" / "runs")["train/learning_rate"] == pytest.approx(
        read_tensorboard(tmp_path / "pt" / "runs")["train/learning_rate"]
    )


def test_xla_and_mixed_precision(tiny_roberta, eli5_jsonl, tmp_path):
    seen = scenario("xla_and_precision", tiny_roberta, eli5_jsonl, tmp_path)
    assert seen["eval"]["mixed_bfloat16"] == pytest.approx(seen["eval"]["float32"], rel=0.02)
    assert seen["max_label"] > 2048  # token ids fp16 cannot hold exactly
    # The model's own loss, our sparse and dense ones: the same in float32, and under each policy.
    own = seen["internal"]["float32"][0]
    assert seen["internal"]["float32"] == pytest.approx([own] * 3, rel=1e-5)
    for policy in ("mixed_float16", "mixed_bfloat16"):
        assert seen["internal"][policy] == pytest.approx([own] * 3, rel=0.02), policy
    assert seen["mixed_after"] < seen["mixed_before"]
    # Same loss with the dense head; XLA (fixed rows) differs only by its own numerics and dropout stream.
    assert seen["heads"]["dense"] == pytest.approx(seen["heads"]["sparse"], rel=1e-4)
    assert seen["heads"]["sparse_xla"] == pytest.approx(seen["heads"]["sparse"], rel=1e-2)
    exact, fixed = seen["rows"]["exact"], seen["rows"]["fixed_xla"]
    assert fixed[1] == exact[1] > 0  # every masked token is in the fixed rows
    assert fixed[0] == pytest.approx(exact[0], rel=1e-5)


def test_every_lr_scheduler_gives_the_rates_of_transformers_get_scheduler(tiny_roberta, eli5_jsonl, tmp_path):
    import torch
    from transformers import get_scheduler

    keras_rates = scenario("schedules", tiny_roberta, eli5_jsonl, tmp_path)
    for name, rates in keras_rates.items():
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        scheduler = get_scheduler(name, optimizer, num_warmup_steps=3, num_training_steps=20)
        torch_rates = []
        for _ in range(20):  # the rate each optimizer step uses
            torch_rates.append(scheduler.get_last_lr()[0])
            optimizer.step()
            scheduler.step()
        np.testing.assert_allclose(rates, torch_rates, rtol=1e-5, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(keras_rates["constant"], [1e-3] * 20, rtol=1e-6)  # no warm-up, as in PyTorch
    assert keras_rates["cosine"][3] > keras_rates["cosine"][10] > keras_rates["cosine"][19] > 0


def test_interrupted_fit_resumes_and_finishes(tiny_roberta, eli5_jsonl, tmp_path):
    seen = scenario("interrupted_fit", tiny_roberta, eli5_jsonl, tmp_path)
    assert seen["crashed"] and seen["backup_left"]
    assert seen["refused"]["block"].startswith("--block-size: the Keras backup in")
    assert seen["refused"]["rate"].startswith("--learning-rate: the Keras backup in")
    assert (
        seen["refused"]["steps"].startswith("--max-steps: the Keras backup in")
        and "already" in seen["refused"]["steps"]
    )
    assert seen["finished_untouched"], "resuming a finished run returns its results untouched"
    assert seen["resumed_steps"] == seen["whole_steps"]
    assert seen["resumed_evals"][0] == 0 and seen["resumed_evals"][-1] == seen["whole_steps"]
    # Exact: the blocks' order and masks follow their place in the run, and the dropout generators' states are
    # in the backup (docs/outputs.md).
    assert seen["resumed_losses"] == seen["whole_losses"]
    assert seen["resumed_after"] == seen["whole_after"]


def test_bad_inputs_name_their_flag_and_keep_previous_runs(tiny_roberta, eli5_jsonl, tmp_path):
    seen = scenario("bad_inputs", tiny_roberta, eli5_jsonl, tmp_path)
    expected = {
        "existing_output": (2, "--output-dir:"),
        "precision": (2, "--mixed-precision"),
        "resume_without_backup": (2, "--resume: no Keras backup"),
        "block_size": (2, "--block-size: 4096 is more than"),
        "xla_multi_worker": (2, "--jit-compile: cannot be combined with --strategy multi-worker"),
        "no_mask": (2, "TEXT: no mask in"),
        "not_utf8": (2, "is not UTF-8 text: line 3, byte"),
        "diverged": (1, "Error: training diverged: the loss is "),
        "non_finite_evaluate": (1, "the eval loss is nan: its weights are not finite (a diverged run?)"),
        "non_finite_fill_mask": (1, "the model's predictions are not finite: its weights are not"),
        "non_finite_train": (2, "has an eval loss of nan: its weights are not finite; train from another model"),
        **{how: (2, "--model: ") for how, _ in BROKEN_MODELS},
    }
    for name, (code, message) in expected.items():
        assert seen[name]["exit"] == code, (name, seen[name])
        assert message in seen[name]["output"], (name, seen[name])
    for how, says in BROKEN_MODELS:
        assert says in seen[how]["output"], (how, seen[how])
    assert seen["existing_kept"]
    assert "no model is saved as the run's result" in seen["diverged"]["output"]
    assert "tf_model.h5" not in seen["diverged_saved"] and "all_results.json" not in seen["diverged_saved"]


def backup_files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_damaged_backup_falls_back_to_the_previous_and_another_model_is_refused(
    tiny_roberta, tiny_bert, eli5_jsonl, tmp_path
):
    assert scenario("stopped_fit", tiny_roberta, eli5_jsonl, tmp_path)["stopped"] == "simulated crash at epoch 2"
    out = tmp_path / "stopped"
    backup, previous = out / "backup", out / "backup-previous"
    before, kept = backup_files(backup), backup_files(previous)
    assert "manifest.json" in before and "loss_log.json" in before
    assert json.loads(before["loss_log.json"])["steps"] == list(range(1, 41))
    assert json.loads(kept["loss_log.json"])["steps"] == list(range(1, 21)), "the backup before, as it was"
    resume = [
        "train",
        TF_ONLY,
        "--dataset",
        eli5_jsonl,
        "--output-dir",
        out,
        *TINY_ARGS,
        "--num-epochs",
        "3",
        "--checkpointing-steps",
        "20",
        "--resume",
        "auto",
    ]

    other = tf_mlm(*resume, "--model", tiny_bert)
    assert other.returncode == 2 and "Traceback" not in other.stderr, other.stderr[-2000:]
    line = other.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: --model: the Keras backup in") and "roberta" in line and "bert" in line, line

    # Both damaged: one line naming each damage, and nothing touched.
    both = tmp_path / "both"
    shutil.copytree(out, both)
    data, old_data = (next(name for name in files if ".data-" in name) for files in (before, kept))
    (both / "backup" / data).write_bytes(b"cut")
    (both / "backup-previous" / old_data).write_bytes(b"cut")
    refused = tf_mlm(*[str(both) if a == out else a for a in resume], "--model", tiny_roberta)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    line = refused.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: --resume: the Keras backup in") and line.count(" has 3 bytes") == 2, line
    assert backup_files(both / "backup") == {**before, data: b"cut"}, "nothing else changed"
    assert backup_files(both / "backup-previous") == {**kept, old_data: b"cut"}

    # The newest damaged: the run resumes from the previous one (step 20) and finishes, each step once.
    (backup / data).write_bytes(before[data][: len(before[data]) // 2])
    resumed = tf_mlm(*resume, "--model", tiny_roberta)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from the previous Keras backup: the newest is damaged" in resumed.stderr
    results = json.loads((out / "all_results.json").read_text())
    total = 3 * (results["data"]["train_blocks"] // 8)
    assert results["optimizer_steps"] == total and results["loss_log"]["steps"] == list(range(1, total + 1))
    assert not backup.exists() and not previous.exists(), "a finished run keeps no backups"


def test_a_killed_fit_resumes_from_its_backup_with_the_same_step_count(tiny_roberta, eli5_jsonl, tmp_path):
    import signal
    import time

    out = tmp_path / "killed"
    args = [*train_command(tiny_roberta, eli5_jsonl, out, TF_ONLY), "--num-epochs", "4", "--checkpointing-steps", "10"]
    process = warm.start("tf", ["-m", "tf_mlm", *args], child_env())
    state, deadline = out / "backup" / "loss_log.json", time.time() + 300
    while time.time() < deadline and process.poll() is None and not state.exists():
        time.sleep(0.05)  # the first epoch's evaluation is written: backups exist, the fit is mid-way
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "all_results.json").exists()
    done = tf_mlm(*args, "--resume", "auto")
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = json.loads((out / "all_results.json").read_text())
    assert resumed["optimizer_steps"] == 4 * (resumed["data"]["train_blocks"] // 8)
    assert [e["step"] for e in resumed["loss_log"]["evals"]][0] == 0


def test_push_to_hub_pushes_each_epoch_with_the_callback_and_the_end_once(tiny_roberta, eli5_jsonl, tmp_path):
    strategies = scenario("push_to_hub", tiny_roberta, eli5_jsonl, tmp_path, USE_TORCH="AUTO")  # as the CLI sets it
    assert sorted(strategies) == ["end", "every_save"]
    for strategy, seen in strategies.items():
        assert seen["repo"] == "me/tiny-tf" and seen["token"] == "hf_given"
        if strategy == "every_save":  # one push per event: the callback at each of the 2 epochs, then the folder
            assert seen["clone"] == "me/tiny-tf"
            assert seen["pushes"] == ["Training in progress epoch 0", "Training in progress epoch 1"]
            assert {"tf_model.h5", "tokenizer.json", "README.md"} <= set(seen["callback_saved"])
            assert "me/tiny-tf" in seen["card"] and "TensorFlow" in seen["card"]  # the callback's own model card
        else:  # no callback, no clone: the finished folder once
            assert "clone" not in seen and seen["pushes"] == [] and seen["callback_saved"] == []
        assert seen["upload_message"].startswith("tf-mlm: perplexity")
        assert seen["uploaded"] == sorted(
            [
                "README.md",
                "all_results.json",
                "config.json",
                "eval_results.json",
                "loss_curve.png",
                "manifest.json",  # the final model's files, which evaluate and fill-mask check a download against
                "merges.txt",
                "run_config.yaml",
                "special_tokens_map.json",
                "tf_model.h5",
                "tokenizer.json",
                "tokenizer_config.json",
                "train_results.json",
                "vocab.json",
            ]
        )


def test_multi_worker_without_its_peers_or_with_a_bad_tf_config_is_one_line(tiny_roberta, eli5_jsonl, tmp_path):
    args = [
        *train_command(tiny_roberta, eli5_jsonl, tmp_path / "out"),
        "--strategy",
        "multi-worker",
        "--worker-timeout",
        "5",
    ]
    port_a, port_b = free_ports(2)
    lonely = {
        "cluster": {"worker": [f"127.0.0.1:{port_a}", f"127.0.0.1:{port_b}"]},
        "task": {"type": "worker", "index": 0},
    }
    for tf_config, code, says in (
        (json.dumps(lonely), 1, "Error: TF_CONFIG: not every worker of"),
        ('{"cluster": ', 2, "Error: TF_CONFIG: is not valid JSON"),
    ):
        done = tf_child("-m", "tf_mlm", *args, timeout=120, TF_CONFIG=tf_config)
        assert done.returncode == code, done.stderr[-2000:]
        assert done.stderr.strip().splitlines()[-1].startswith(says) and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


PLAIN_TRANSFORMERS = """
import json, sys
from transformers import AutoModelForMaskedLM, TFAutoModelForMaskedLM, pipeline
from transformers.trainer_utils import get_last_checkpoint
top = {"tf": [], "pt": []}
for framework, Auto in (("tf", TFAutoModelForMaskedLM), ("pt", AutoModelForMaskedLM)):
    # transformers 4.57 passes its default dtype="auto" to TF models, which reject it (any TF model, not
    # only ours): a TF pipeline needs dtype=None there.
    dtype = {"dtype": None} if framework == "tf" else {}
    for folder in sys.argv[1:]:
        Auto.from_pretrained(folder)
        fill = pipeline("fill-mask", model=folder, framework=framework, **dtype)
        top[framework].append([[p["token"] for p in fill(text, top_k=3)]
                               for text in ("the cat sees <mask> ball.", "a dog <mask> the moon")])
# The last folder's newest checkpoint (pt-mlm's), found as the Trainer's are: a model folder.
newest = get_last_checkpoint(sys.argv[-1])
AutoModelForMaskedLM.from_pretrained(newest)
fill = pipeline("fill-mask", model=newest, framework="pt")
checkpoint_top = [p["token"] for p in fill("the cat sees <mask> ball.", top_k=3)]
ours = ("mlm_toolkit", "shared", "pt_mlm", "tf_mlm", "benchmarks")
project = sorted(m for m in sys.modules if m.split(".")[0] in ours)
print("RESULT " + json.dumps({"top": top, "newest": newest, "checkpoint_top": checkpoint_top, "project": project}))
"""


def load_with_plain_transformers(folders: list[Path], work: Path) -> dict:
    """A fresh process that never imports this project, in a user's default environment (both frameworks
    visible: transformers 4.x cannot import its pipelines with torch hidden): each folder in each framework."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("USE_TF", "USE_TORCH", "PYTHONPATH", "TF_USE_LEGACY_KERAS")
    }
    done = subprocess.run(
        [sys.executable, "-c", PLAIN_TRANSFORMERS, *map(str, folders)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])


@pytest.mark.slow
def test_plain_transformers_loads_both_paths_outputs_in_both_frameworks(trained, tiny_roberta, eli5_jsonl, tmp_path):
    from pt_helpers import train_tiny

    pt_out = tmp_path / "pt"
    train_tiny(tiny_roberta, eli5_jsonl, pt_out, "--max-steps", "30", "--checkpointing-steps", "15", "--tf-weights")
    folders = [trained[0], pt_out]  # tf-mlm's and pt-mlm's
    seen = load_with_plain_transformers(folders, tmp_path)
    assert seen["project"] == []
    for n, folder in enumerate(folders):
        assert seen["top"]["tf"][n] == seen["top"]["pt"][n], folder  # the same weights in both files
    # The newest checkpoint holds the final weights: it predicts as the output folder does.
    assert seen["newest"] == str(pt_out / "checkpoint-30") and seen["checkpoint_top"] == seen["top"]["pt"][1][0]


def free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_match_one_with_the_same_global_batch(tiny_roberta, eli5_jsonl, tmp_path):
    one = tf_mlm(
        *train_command(tiny_roberta, eli5_jsonl, tmp_path / "single", TF_ONLY), "--max-steps", "6"
    )  # one worker, 8 blocks per step
    assert one.returncode == 0, one.stderr[-3000:]
    single = json.loads((tmp_path / "single" / "all_results.json").read_text())
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        env = {
            **child_env(),
            "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}),
        }
        args = [
            "train",
            "--strategy",
            "multi-worker",
            TF_ONLY,
            "--model",
            tiny_roberta,
            "--dataset",
            eli5_jsonl,
            "--output-dir",
            tmp_path / f"worker{index}",
            *TINY_ARGS,
            "--per-device-batch-size",
            "4",
            "--max-steps",
            "6",
        ]
        processes.append(warm.start("tf", ["-m", "tf_mlm", *args], env))
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
        assert "distributed multi-worker over 2 workers, batch 4 per replica x 2 replicas" in stderr
    assert "distributed no, batch 8 per replica x 1 replicas" in one.stderr
    chief = json.loads((tmp_path / "worker0" / "all_results.json").read_text())
    assert chief["num_processes"] == 2 and chief["global_batch"] == single["global_batch"] == 8
    assert chief["optimizer_steps"] == single["optimizer_steps"]
    assert chief["after"]["eval_loss"] == pytest.approx(single["after"]["eval_loss"], rel=0.02)
    # The first step from the same weights and blocks: the workers' mean loss, as one process logs it (it was
    # their sum), and the norm of the summed gradient (a mean of the two halves' means against one mean).
    for figure in ("losses", "grad_norms"):
        assert chief["loss_log"][figure][0] == pytest.approx(single["loss_log"][figure][0], rel=0.05), figure


def test_a_final_save_on_a_full_disk_is_one_line_and_the_backup_finishes_the_run_from_scratch_too(
    tiny_bert, eli5_jsonl, tmp_path
):
    import math

    from test_scratch import SMALL

    out = tmp_path / "out"
    scratch = ["--model-type", "bert", "--config-overrides", SMALL, "--tokenizer-name", tiny_bert]
    args = ["train", TF_ONLY, "--dataset", eli5_jsonl, "--output-dir", out, *TINY_ARGS, *scratch, "--num-epochs", "2"]
    # The final save fails: the Keras backup is left, as after a crash at the end.
    failed = tf_child(HERE / "faults.py", "final-model-disk-full", "tf_mlm", *args)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr[-3000:]
    line = failed.stderr.strip().splitlines()[-1]
    assert line.startswith(f"Error: No space left on device while writing {out}/.tmp-model/tf_model.h5; "), line
    assert "manifest.json" in backup_files(out / "backup") and not (out / "all_results.json").exists()
    shutil.copy(out / "backup" / "loss_log.json", tmp_path / "backed-up.json")
    done = tf_mlm(*args, "--resume", "auto")  # resumed from the same fresh weights' folder and its backup
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "all_results.json").read_text())
    backed_up = json.loads((tmp_path / "backed-up.json").read_text())
    steps = results["optimizer_steps"]
    assert steps == 2 * (results["data"]["train_blocks"] // 8)
    assert results["loss_log"]["losses"] == backed_up["losses"] and len(backed_up["losses"]) == steps
    assert [e["step"] for e in results["loss_log"]["evals"]] == [0, steps // 2, steps]
    assert results["train_tokens_per_second"] is None, "every step came from the backup, none trained again"
    assert not (out / "backup").exists(), "the backup goes once the run is complete"
    vocabulary = json.loads((out / "config.json").read_text())["vocab_size"]
    assert results["from_scratch"] and results["model"] == "bert from scratch"
    assert results["before"]["eval_loss"] == pytest.approx(math.log(vocabulary), rel=0.02)
    assert "trained from scratch" in (out / "README.md").read_text()


@pytest.mark.slow
def test_transformers_test_run_mlm_tensorflow_command_line(tiny_roberta, tmp_path):
    """examples/tensorflow/test_tensorflow_examples.py::test_run_mlm, as it is (the model and the text swapped)."""
    from tiny_models import tiny_corpus

    sample_text, out = tmp_path / "sample_text.txt", tmp_path / "out"
    sample_text.write_text("\n".join(tiny_corpus(60)) + "\n")
    testargs = f"""
        train --model_name_or_path {tiny_roberta} --train_file {sample_text} --validation_file {sample_text}
        --output_dir {out} --overwrite_output_dir --do_train --do_eval --max_seq_length 64 --prediction_loss_only
        --num_train_epochs=1 --learning_rate=1e-4
    """.split()
    done = tf_mlm(*testargs)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "all_results.json").read_text())  # its get_results()
    assert result["eval_perplexity"] == result["perplexity"] < 1e6
