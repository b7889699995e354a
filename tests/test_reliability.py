"""Faults and bad input: interrupted saves, Ctrl-C, unwritable outputs, the bad-input catalog, and
two processes under `accelerate launch` (PyTorch path; the Keras faults are in test_tf_train.py)."""

import json
import signal
import time
from pathlib import Path

import pytest
import warm
from pt_helpers import TINY_ARGS, child_env, newest_step, pt_train_command, run_cli, train_tiny

from mlm_toolkit.outputs import checkpoint_damage, complete_checkpoints

ROOT = Path(__file__).resolve().parent.parent


def start_pt(out: Path, model: Path, data: Path, *extra: str) -> warm.WarmProcess:
    return warm.start("pt", ["-m", "pt_mlm", *pt_train_command(model, data, out), *extra], child_env())


def wait_for_checkpoint(process: warm.WarmProcess, out: Path, at_least: int) -> None:
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if newest_step(out) >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


@pytest.mark.parametrize("sent, says", [(signal.SIGINT, "interrupted"), (signal.SIGTERM, "terminated (SIGTERM)")])
def test_ctrl_c_or_sigterm_saves_a_checkpoint_and_says_how_to_resume(tiny_roberta, eli5_jsonl, tmp_path, sent, says):
    out = tmp_path / "out"
    process = start_pt(out, tiny_roberta, eli5_jsonl, "--num-epochs", "20", "--checkpointing-steps", "5")
    wait_for_checkpoint(process, out, 5)
    process.send_signal(sent)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    message = stderr.strip().splitlines()[-1]
    assert message.startswith(f"Error: {says} at step") and "--resume auto" in message
    step = int(message.split(f"{says} at step ")[1].split(";")[0])
    assert (out / f"checkpoint-{step}").is_dir()


@pytest.mark.parametrize(
    "fault, says",
    [
        ("final-model-disk-full", "No space left on device while writing {out}/.tmp-model/model.safetensors; "),
        ("report-read-only", "Read-only file system while writing {out}/all_results.json"),
        ("no-room-after-first", "--output-dir: checkpoint checkpoint-4 needs about"),
        (
            "second-checkpoint-read-only",
            "Read-only file system while writing {out}/.tmp-checkpoint-4/model.safetensors",
        ),
        (
            "second-checkpoint-dies-midway",
            "No space left on device while writing {out}/.tmp-checkpoint-4/optimizer.bin; ",
        ),
    ],
)
def test_a_failed_write_is_one_line_and_the_last_checkpoint_resumes(tiny_roberta, eli5_jsonl, tmp_path, fault, says):
    out = tmp_path / "out"
    args = [
        "--model",
        tiny_roberta,
        "--dataset",
        eli5_jsonl,
        "--output-dir",
        out,
        *TINY_ARGS,
        "--max-steps",
        "4",
        "--checkpointing-steps",
        "2",
    ]
    failed = warm.run("pt", [ROOT / "tests" / "faults.py", fault, "pt_mlm", "train", *args], child_env())
    assert failed.returncode == 1 and "Traceback" not in failed.stdout + failed.stderr, failed.stderr[-3000:]
    line = failed.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: " + says.format(out=out)), line
    assert not (out / "all_results.json").exists()
    kept = complete_checkpoints(out)
    assert kept and all(checkpoint_damage(path) is None for path in kept), "every checkpoint as it was written"
    if "checkpoint" in fault:
        assert [path.name for path in kept] == ["checkpoint-2"]
    resumed = train_tiny(tiny_roberta, eli5_jsonl, out, *args[6:], "--resume", "auto")
    assert resumed["optimizer_steps"] == 4


def test_unwritable_output_dir_fails_before_training(tiny_roberta, eli5_jsonl, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_cli("train", "--model", tiny_roberta, "--dataset", eli5_jsonl, "--output-dir", blocker / "out")
    assert result.exit_code == 1 and "--output-dir: cannot write to" in result.output


def catalog(tmp_path: Path, tiny_roberta: Path, eli5_jsonl: Path, gpt2: Path, nomask: Path) -> list:
    (tmp_path / "empty.jsonl").touch()
    (tmp_path / "data.xml").write_text("<a/>")
    (tmp_path / "bad-rows.jsonl").write_text('{"text": ""}\n{"text": 3}\n')
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("a previous run")
    m, d = ("--model", str(tiny_roberta)), ("--dataset", str(eli5_jsonl))
    train = lambda *args: ["train", "--output-dir", str(tmp_path / "out"), "--block-size", "32", *args]  # noqa: E731
    return [
        ("missing dataset file", train(*m, "--dataset", str(tmp_path / "nope.jsonl")), 2, "--dataset: no such file"),
        ("empty dataset file", train(*m, "--dataset", str(tmp_path / "empty.jsonl")), 2, "--dataset: file"),
        ("unknown format", train(*m, "--dataset", str(tmp_path / "data.xml")), 2, "--dataset: unknown format"),
        (
            "text column absent",
            train(*m, *d, "--text-column", "body"),
            2,
            "--text-column: column 'body' not found; the dataset has",
        ),
        (
            "no usable text",
            train(*m, "--dataset", str(tmp_path / "bad-rows.jsonl"), "--text-column", "text"),
            2,
            "--dataset:",
        ),
        (
            "too small for one block",
            train(*m, *d, "--max-samples", "4", "--block-size", "128"),
            2,
            "less than one block",
        ),
        ("block size beyond positions", train(*m, *d, "--block-size", "4096"), 2, "--block-size: 4096 is more than"),
        ("mlm probability outside (0, 1)", train(*m, *d, "--mlm-probability", "1.5"), 2, "--mlm-probability:"),
        ("zero batch size", train(*m, *d, "--per-device-batch-size", "0"), 2, "--per-device-batch-size:"),
        ("negative epochs", train(*m, *d, "--num-epochs", "-1"), 2, "--num-epochs:"),
        ("zero steps", train(*m, *d, "--max-steps", "0"), 2, "--max-steps:"),
        ("not a masked LM", train("--model", str(gpt2), *d), 2, "has no masked-LM head"),
        ("tokenizer without mask", train("--model", str(nomask), *d), 2, "has no mask token"),
        ("fp16 on a CPU", train(*m, *d, "--mixed-precision", "fp16"), 2, "--mixed-precision: fp16 needs a CUDA GPU"),
        ("zero log interval", train(*m, *d, "--log-every", "0"), 2, "--log-every: must be a positive number"),
        ("negative loader workers", train(*m, *d, "--loader-workers", "-1"), 2, "--loader-workers: must be 0 or more"),
        (
            "Hub id offline",
            train("--model", "distilbert/distilroberta-base", *d),
            1,
            "--model: 'distilbert/distilroberta-base' is a Hub id",
        ),
        ("resume without checkpoint", train(*m, *d, "--resume", "auto"), 2, "--resume: no complete checkpoint"),
        ("existing output dir", ["train", *m, *d, "--output-dir", str(existing)], 2, "--output-dir:"),
        ("push without repo id", train(*m, *d, "--push-to-hub"), 2, "--hub-model-id: is required"),
        ("push offline", train(*m, *d, "--push-to-hub", "--hub-model-id", "me/x"), 1, "--push-to-hub:"),
        ("fill-mask without mask", ["fill-mask", str(tiny_roberta), "no mask here"], 2, "TEXT: no mask in"),
    ]


@pytest.fixture(scope="module")
def odd_models(tmp_path_factory, tiny_roberta):
    import shutil

    from transformers import AutoTokenizer, GPT2Config

    root = tmp_path_factory.mktemp("odd")
    GPT2Config(n_layer=1, n_embd=8, n_head=1).save_pretrained(root / "gpt2")
    shutil.copytree(tiny_roberta, root / "nomask")
    tokenizer = AutoTokenizer.from_pretrained(root / "nomask")
    tokenizer.mask_token = None
    tokenizer.save_pretrained(root / "nomask")
    return root / "gpt2", root / "nomask"


def test_bad_input_catalog(tmp_path, tiny_roberta, eli5_jsonl, odd_models):
    from click.testing import CliRunner

    from pt_mlm import main

    failures = []
    for name, args, code, message in catalog(tmp_path, tiny_roberta, eli5_jsonl, *odd_models):
        result = CliRunner().invoke(main, args)
        lines = [line for line in result.output.strip().splitlines() if line.startswith("Error")]
        ok = result.exit_code == code and len(lines) == 1 and message in lines[0] and "Traceback" not in result.output
        if not ok:
            failures.append((name, result.exit_code, result.output[-500:], repr(result.exception)))
    assert not failures, failures
    assert (tmp_path / "existing" / "keep.txt").read_text() == "a previous run"
    assert not (tmp_path / "out" / "all_results.json").exists()


def free_port() -> int:
    """A port nobody listens on now (a fixed one can still be held by an earlier run's socket)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_with_twice_the_batch(tiny_roberta, eli5_jsonl, tmp_path):
    common = [*TINY_ARGS, "--num-epochs", "1"]
    warned = ["--validation-file", str(eli5_jsonl)]  # every process finds it: the warning, once
    env = {**child_env(), "PYTHONPATH": str(ROOT)}
    # torchrun (in a warm child) starts the processes (accelerate launch --cpu would start one); Accelerate sees
    # no GPU: gloo.
    launch = [
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        "-m",
        "pt_mlm",
        "train",
        "--model",
        str(tiny_roberta),
        "--dataset",
        str(eli5_jsonl),
        "--output-dir",
        str(tmp_path / "two"),
        *common,
        "--per-device-batch-size",
        "4",
        *warned,
    ]
    done = warm.run("pt", launch, env)
    assert done.returncode == 0, done.stderr[-3000:]
    logged = [line for line in done.stderr.splitlines() if line[:2].isdigit() and " mlm" in line]
    assert logged and len(logged) == len(set(logged)), "each message once, the warning included"
    assert sum("is the training file" in line for line in logged) == 1
    assert sum("distributed DDP (CPU) over 2 processes, batch 4 per device x 2 processes" in line for line in logged)
    two = json.loads((tmp_path / "two" / "all_results.json").read_text())
    one = train_tiny(tiny_roberta, eli5_jsonl, tmp_path / "one", "--num-epochs", "1", *warned)  # 1 x 8
    assert two["num_processes"] == 2 and two["global_batch"] == one["global_batch"] == 8
    assert two["optimizer_steps"] == one["optimizer_steps"]
    assert two["before"]["eval_loss"] == pytest.approx(one["before"]["eval_loss"], rel=1e-5)
    assert two["after"]["eval_loss"] == pytest.approx(one["after"]["eval_loss"], rel=0.01)


def test_a_diverging_run_stops_at_that_step_and_saves_no_model(tiny_roberta, eli5_jsonl, tmp_path):
    out = tmp_path / "out"
    args = ("--max-steps", "6", "--checkpointing-steps", "1", "--learning-rate", "1e6")
    result = run_cli(*pt_train_command(tiny_roberta, eli5_jsonl, out, *args))
    assert result.exit_code == 1, result.output
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("Error: training diverged: the loss is nan and the gradient norm nan at step ")
    assert message.endswith(
        "no model is saved as the run's result (try a lower --learning-rate or clip with "
        "--max-grad-norm, in a new --output-dir)"
    )
    step = int(message.split(" at step ")[1].split(";")[0])
    assert newest_step(out) == step - 1 and step > 1  # the good checkpoints before it stay
    assert not (out / "model.safetensors").exists() and not (out / "all_results.json").exists()


def test_a_model_with_non_finite_weights_is_refused_by_evaluate_fill_mask_and_train(
    tiny_roberta, eli5_jsonl, tmp_path
):
    from tiny_models import non_finite_copy

    broken = non_finite_copy(tiny_roberta, tmp_path)
    evaluated = run_cli("evaluate", broken, "--dataset", eli5_jsonl, "--block-size", "32")
    assert evaluated.exit_code == 1
    assert evaluated.output.strip().endswith(
        f"{broken}: the eval loss is nan: its weights are not finite (a diverged run?)"
    )
    filled = run_cli("fill-mask", broken, "the cat <mask> the ball.")
    assert filled.exit_code == 1
    assert "the model's predictions are not finite: its weights are not (a diverged training run?)" in filled.output
    trained = run_cli(*pt_train_command(broken, eli5_jsonl, tmp_path / "from-nan", "--max-steps", "1"))
    assert trained.exit_code == 2
    expected = f"--model: {broken} has an eval loss of nan: its weights are not finite; train from another model"
    assert trained.output.strip().endswith(expected)


def test_data_with_nothing_to_mask_is_refused_before_training(tiny_bert, tmp_path):
    data = tmp_path / "masks.jsonl"
    data.write_text("".join(json.dumps({"text": "[MASK] [MASK] [SEP] [CLS] [MASK]"}) + "\n" for _ in range(400)))
    result = run_cli(*pt_train_command(tiny_bert, data, tmp_path / "out", "--max-steps", "1"))
    assert result.exit_code == 2
    assert "--dataset: the eval split holds only special tokens (" in result.output
    assert ": nothing in it can be masked; check --text-column" in result.output


def test_errors_escape_control_characters_and_the_disk_full_advice_fits_the_run(tmp_path):
    import errno

    from mlm_toolkit.console import describe_os_error, printable

    assert printable("out\x1b[2J\rname é") == "out\\x1b[2J\\rname é"
    out = tmp_path / "out"
    (out / ".tmp-model").mkdir(parents=True)
    full = OSError(errno.ENOSPC, "No space left on device", str(out / ".tmp-model" / "model.safetensors"))
    assert describe_os_error(full).endswith("free some space and run it again (there is no checkpoint to resume from)")
    (out / "checkpoint-2").mkdir()
    assert describe_os_error(full).endswith("free some space and --resume auto")
    odd = tmp_path / "a\x1b]0;owned\x07"
    odd.write_text("not a folder")
    result = run_cli("train", "--model", "builtin:minilm", "--output-dir", odd)
    assert result.exit_code != 0 and "\x1b" not in result.output and "\\x1b]0;owned\\x07" in result.output


def test_a_launch_that_would_train_otherwise_than_asked_says_so(
    tiny_roberta, eli5_jsonl, tmp_path, monkeypatch, caplog
):
    """FSDP on CPU processes is refused (Accelerate would run DDP); an Accelerate config's 2 processes, not
    launched, are named; the derived line names the distributed type."""
    caplog.set_level("INFO")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    refused = run_cli(*pt_train_command(tiny_roberta, eli5_jsonl, tmp_path / "fsdp", "--max-steps", "1"))
    assert refused.exit_code == 2 and "--use_fsdp: Accelerate's FSDP needs GPUs" in refused.output
    assert not (tmp_path / "fsdp").exists()
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    config = tmp_path / "accelerate.yaml"
    config.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_CPU\nnum_processes: 2\n")
    monkeypatch.setenv("ACCELERATE_CONFIG_FILE", str(config))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    result = run_cli(*pt_train_command(tiny_roberta, eli5_jsonl, tmp_path / "one", "--max-steps", "1"))
    assert result.exit_code == 0, result.output
    said = f"the Accelerate config {config} asks for 2 processes; this run, not launched, has 1"
    assert said in caplog.text and "distributed no, batch 8 per device x 1 processes" in caplog.text
