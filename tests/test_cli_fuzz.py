"""Every numeric flag at its extremes, through the real argument parsing and config validation of both
CLIs: the answer is exit 0 (valid) or 2 (one line naming the flag), never a traceback. Training itself is
replaced by a recorder, so this runs in seconds; TensorFlow is never imported (the Keras options are
dataclasses like the PyTorch ones)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlm_toolkit.cli import make_cli

EXTREMES = ["nan", "inf", "-inf", "-1", "0", "1e308", "-1e308", "1e-320", "99999999999999999999", "0.5", "1", "3"]
NUMERIC_FLAGS = {
    "pt": [
        "--max-samples",
        "--test-size",
        "--block-size",
        "--mlm-probability",
        "--per-device-batch-size",
        "--gradient-accumulation-steps",
        "--learning-rate",
        "--weight-decay",
        "--num-epochs",
        "--max-steps",
        "--warmup-steps",
        "--max-grad-norm",
        "--seed",
        "--checkpointing-steps",
        "--save-total-limit",
        "--eval-batch-size",
        "--max-eval-samples",
        "--warmup-ratio",
        "--eval-steps",
        "--preprocessing-num-workers",
        "--validation_split_percentage",
        "--log-every",
        "--loader-workers",
    ]
}
NUMERIC_FLAGS["tf"] = [
    f
    for f in NUMERIC_FLAGS["pt"]
    if f not in ("--log-every", "--loader-workers", "--gradient-accumulation-steps", "--save-total-limit")
]


def fake_results():
    from mlm_toolkit.metrics import LossLog, Results

    losses = LossLog()
    losses.log_eval(0, 0.0)
    return Results.of_run(
        losses,
        framework="fuzz",
        config={},
        data={},
        model="m",
        mask_token="<mask>",
        fresh_weights=[],
        optimizer_steps=0,
        steps_per_epoch=1,
        global_batch=1,
        precision="no",
        device="cpu",
        num_processes=1,
        train_tokens=0,
        train_seconds=0.0,
    )


def cli(path: str):
    if path == "pt":
        from pt_mlm import PTOptions as Options
    else:
        from tf_mlm import TFOptions as Options
    return make_cli(
        f"{path}-mlm",
        "fuzz",
        Options,
        train=lambda run, options: fake_results(),
        filler=lambda model: None,
        version="0",
    )


@pytest.mark.parametrize("path", ["pt", "tf"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_extreme_numbers_never_end_in_a_traceback(path, data, tmp_path):
    flags = data.draw(st.lists(st.sampled_from(NUMERIC_FLAGS[path]), min_size=1, max_size=4, unique=True))
    args = ["train", "--model", "m", "--dataset", "d", "--output-dir", str(tmp_path / "out")]
    for flag in flags:
        args += [flag, data.draw(st.sampled_from(EXTREMES))]
    result = CliRunner().invoke(cli(path), args)
    assert result.exit_code in (0, 2), (args, result.output, result.exception)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        last = result.output.strip().splitlines()[-1]
        assert any(flag in last for flag in flags), (args, last)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize(
    "flag",
    ["--learning-rate", "--weight-decay", "--num-epochs", "--test-size", "--mlm-probability", "--max-grad-norm"],
)
def test_non_finite_floats_are_refused_naming_the_flag(flag, value, tmp_path):
    result = CliRunner().invoke(cli("pt"), ["train", "--output-dir", str(tmp_path), flag, value])
    assert result.exit_code == 2 and result.output.strip().splitlines()[-1].startswith(f"Error: {flag}:"), (
        result.output
    )
    assert "must be a finite number" in result.output  # refused as not finite, not for another reason


def test_the_clis_answer_without_importing_a_framework():
    """`--help` and `--version` stay instant: the CLI modules import neither torch nor TensorFlow."""
    import subprocess
    import sys

    code = (
        "import sys, pt_mlm, tf_mlm; "
        "print(sorted(m for m in ('torch', 'tensorflow', 'transformers', 'keras') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_users_own_shared_and_benchmarks_modules_do_not_collide(tmp_path):
    """The core installs as `mlm_toolkit`: a project of the user's with its own `shared` and `benchmarks`
    packages imports both, and ours runs beside them."""
    import subprocess
    import sys

    for name in ("shared", "benchmarks"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("OWNER = 'the user'\n")
    code = (
        "import shared, benchmarks, pt_mlm, tf_mlm, mlm_toolkit.run\n"
        "assert shared.OWNER == benchmarks.OWNER == 'the user'\n"
        "assert all(m.split('.')[0] != 'shared' or m == 'shared' for m in __import__('sys').modules)\n"
        "pt_mlm.main(['--version'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("pt-mlm, version ")


@pytest.mark.parametrize(
    "error, expected",
    [
        (
            RuntimeError("something nobody foresaw"),
            "Error: unexpected RuntimeError: something nobody foresaw (traceback: ",
        ),
        (
            OSError(28, "No space left on device", "/data/run/pytorch_model.bin"),
            "Error: No space left on device while writing /data/run/pytorch_model.bin; ",
        ),
    ],
)
def test_an_unexpected_failure_is_one_line_with_the_traceback_in_a_file(error, expected, tmp_path):
    def failing_train(run, options):
        raise error

    from pt_mlm import PTOptions

    main = make_cli("pt-mlm", "guard", PTOptions, train=failing_train, filler=lambda model: None, version="0")
    result = CliRunner().invoke(main, ["train", "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith(expected), line
    log = Path(line.rsplit(": ", 1)[-1].rstrip(")"))
    assert "Traceback" in log.read_text() and type(error).__name__ in log.read_text()


@pytest.mark.parametrize(
    "tf_config, says",
    [
        (None, "multi-worker needs TF_CONFIG"),
        ('{"cluster": {"worker": ["a:1"]}, "task": ', "is not valid JSON"),
        ('{"task": {"type": "worker", "index": 0}}', 'needs a "cluster" object'),
        ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "must be a non-empty list"),
        ('{"cluster": {"worker": ["host-without-port"]}, "task": {"type": "worker", "index": 0}}', "is not host:port"),
        (
            '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "chief", "index": 0}}',
            'needs a "task" whose "type"',
        ),
        (
            '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
            "task index 2 is not a position",
        ),
    ],
)
def test_a_malformed_tf_config_is_one_line(tf_config, says):
    from mlm_toolkit.errors import UsageError
    from tf_mlm.options import check_tf_config

    with pytest.raises(UsageError) as error:
        check_tf_config(tf_config)
    assert str(error.value).startswith("TF_CONFIG:") and says in str(error.value)


def test_a_wellformed_tf_config_passes():
    from tf_mlm.options import check_tf_config

    check_tf_config(
        '{"cluster": {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}, "task": {"type": "worker", "index": 1}}'
    )
