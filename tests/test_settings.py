"""No setting is silently dropped: a finished run resumed with other settings, a precision changed on resume,
config files (merged in order, typed as the flags), an option given twice, wrong types from Python."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pt_helpers import run_cli, train_tiny
from test_flags import recording_cli


@pytest.fixture(scope="module")
def finished_run(tiny_roberta, eli5_jsonl, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "out"
    train_tiny(tiny_roberta, eli5_jsonl, out, "--max-steps", "2", "--checkpointing-steps", "1")
    return out


def last_line(result) -> str:
    return result.output.strip().splitlines()[-1]


def test_a_finished_run_resumed_with_other_settings_names_what_differs(finished_run, tiny_roberta, eli5_jsonl):
    from pt_helpers import pt_train_command

    command = pt_train_command(tiny_roberta, eli5_jsonl, finished_run, "--max-steps", "2", "--resume", "auto")
    same = run_cli(*command)
    assert same.exit_code == 0 and "holds a complete run" in same.output
    other = run_cli(*command, "--max-samples", "300")
    assert other.exit_code == 2 and last_line(other).startswith("Error: --max-samples:"), other.output
    assert "made with --max-samples 5000, this run has 300" in last_line(other)
    further = run_cli(*[a if a != "2" else "4" for a in command])
    assert further.exit_code == 2 and last_line(further).startswith("Error: --max-steps:"), further.output
    assert f"--model {finished_run} with another --output-dir" in last_line(further)


def test_resume_with_another_precision_is_refused(finished_run, tiny_roberta, eli5_jsonl, tmp_path):
    from pt_helpers import checkpoint_files, pt_train_command

    unfinished = tmp_path / "out"
    (unfinished).mkdir()
    for path in finished_run.glob("checkpoint-1"):
        os.system(f"cp -r {path} {unfinished}")
    before = checkpoint_files(unfinished)
    command = pt_train_command(tiny_roberta, eli5_jsonl, unfinished, "--max-steps", "2", "--resume", "auto")
    refused = run_cli(*command, "--mixed-precision", "bf16")
    assert refused.exit_code == 2 and last_line(refused).startswith("Error: --mixed-precision:"), refused.output
    assert "made with --mixed-precision no, this run has bf16" in last_line(refused)
    assert checkpoint_files(unfinished) == before


def test_the_training_file_as_validation_file_is_said(tiny_roberta, eli5_jsonl, tmp_path, caplog):
    caplog.set_level("WARNING")
    train_tiny(tiny_roberta, eli5_jsonl, tmp_path / "out", "--max-steps", "1", "--validation-file", eli5_jsonl)
    assert "--validation-file is the training file" in caplog.text


def test_config_files_merge_in_order_and_are_typed_as_the_flags(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(yaml.safe_dump({"max_steps": 3, "seed": 7, "learning_rate": "2e-5"}))
    second.write_text(yaml.safe_dump({"max_steps": 5}))
    cli, asked = recording_cli()
    result = CliRunner().invoke(cli, ["train", "--config", first, "--config", second])
    assert result.exit_code == 0, result.output
    run, _ = asked[0]
    assert (run.train.max_steps, run.train.seed, run.train.learning_rate) == (5, 7, 2e-5)
    for value in (1.7, True, "many"):
        second.write_text(yaml.safe_dump({"max_steps": value}))
        refused = CliRunner().invoke(cli, ["train", "--config", second])
        assert refused.exit_code == 2 and "max_steps must be int or None" in refused.output, refused.output


def test_one_option_given_twice_with_other_values_is_refused():
    cli, asked = recording_cli()
    refused = CliRunner().invoke(cli, ["train", "--learning_rate", "1", "--learning-rate", "2e-4"])
    assert refused.exit_code == 2 and not asked
    assert "--learning_rate and --learning-rate set the same setting to '1' and '2e-4'" in refused.output
    same = CliRunner().invoke(cli, ["train", "--seed", "3", "--seed=3"])
    assert same.exit_code == 0 and asked[0][0].train.seed == 3
    later = CliRunner().invoke(cli, ["train", "--seed", "3", "--seed", "5"])  # one spelling: the last wins
    assert later.exit_code == 0 and asked[1][0].train.seed == 5


def test_evaluate_checks_its_output_file_before_the_work(finished_run, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    result = run_cli("evaluate", finished_run, "--output-file", blocked / "eval.json")
    assert result.exit_code == 2 and last_line(result).startswith("Error: --output-file: cannot write")
    assert "eval loss" not in result.output, "refused before evaluating"


@pytest.mark.parametrize(
    "make, names",
    [
        ("DataConfig(block_size=32.5)", "DataConfig(block_size=...) must be int"),
        ("DataConfig(block_size='128')", "DataConfig(block_size=...) must be int"),
        ("TrainConfig(output_dir=123)", "TrainConfig(output_dir=...) must be str"),
        ("TrainConfig(max_steps=True)", "TrainConfig(max_steps=...) must be int or None"),
        ("RunConfig(data='x')", "RunConfig(data=...) must be a DataConfig"),
        ("pt_mlm.train('cfg')", "train(run=...) takes a RunConfig"),
    ],
)
def test_the_python_api_refuses_wrong_types_naming_the_field(make, names):
    import pt_mlm  # noqa: F401 (used by the expressions)
    from mlm_toolkit.config import DataConfig, RunConfig, TrainConfig  # noqa: F401

    with pytest.raises(TypeError, match=r".*" + names.replace("(", r"\(").replace(")", r"\)")):
        eval(make)


def test_mask_filler_refuses_wrong_types(finished_run):
    import pt_mlm

    fill = pt_mlm.MaskFiller(str(finished_run))
    # Errors name the Python argument the caller wrote, not the CLI's flag.
    with pytest.raises(TypeError, match="^texts: must be a str or a list of str, got 123"):
        fill(123)
    with pytest.raises(TypeError, match="^top_k: must be an int, got 2.5"):
        fill("the cat <mask> the ball.", top_k=2.5)
    with pytest.raises(TypeError, match="^targets: must be a str or a list of str, got 5"):
        fill("the cat <mask> the ball.", targets=5)
    with pytest.raises(ValueError, match="^texts: no mask in 'no mask'"):
        fill("no mask")
    with pytest.raises(ValueError, match="^top_k: must be at least 1"):
        fill("the cat <mask> the ball.", top_k=0)


# Keys of a config file with values of every kind, right and wrong, and flags under two spellings.
VALUES = st.one_of(st.integers(-5, 10**6), st.floats(allow_nan=True), st.booleans(), st.none(), st.text(max_size=8))
KEYS = st.sampled_from(
    [
        "max_steps",
        "learning_rate",
        "block_size",
        "seed",
        "num_epochs",
        "test_size",
        "line_by_line",
        "max-samples",
        "per_device_train_batch_size",
        "lr_scheduler",
        "report_to",
        "checkpointing_steps",
    ]
)
TWICE = st.sampled_from(
    [
        ("--learning-rate", "--learning_rate"),
        ("--max-steps", "--max_train_steps"),
        ("--seed", "--seed"),
        ("--block-size", "--max_seq_length"),
    ]
)


@pytest.mark.parametrize("framework", ["pt", "tf"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    config=st.dictionaries(KEYS, VALUES, max_size=4),
    twice=st.none() | st.tuples(TWICE, st.integers(1, 9), st.integers(1, 9)),
)
def test_config_values_and_repeated_flags_end_in_exit_0_or_2_naming_the_key(framework, config, twice, tmp_path):
    path = Path(tmp_path) / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    args = ["train", "--config", str(path)]
    if twice:
        (first, second), a, b = twice
        args += [first, str(a), second, str(b)]
    cli, _ = recording_cli(framework)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (0, 2), (result.output, repr(result.exception))
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        line = last_line(result)
        named = [k for k in config] + ([first, second] if twice else [])
        flags = ["--" + k.replace("_", "-") for k in config]
        assert any(n in line for n in named + flags + ["--config"]), line
    json.dumps(config)  # the example itself is plain data


def test_a_file_that_is_not_utf8_or_not_json_is_one_line_naming_where(tiny_roberta, eli5_jsonl, tmp_path):
    from pt_helpers import pt_train_command
    from tiny_models import not_utf8

    bad = run_cli(*pt_train_command(tiny_roberta, not_utf8(eli5_jsonl, tmp_path), tmp_path / "a"))
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert last_line(bad).startswith("Error: --dataset: ") and "is not UTF-8 text: line 3, byte" in last_line(bad)
    lines = eli5_jsonl.read_text().splitlines()
    lines[4] = lines[4][:-3]
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(lines) + "\n")
    result = run_cli(*pt_train_command(tiny_roberta, broken, tmp_path / "b"))
    assert result.exit_code == 2 and "line 5 is not JSON" in last_line(result), result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1, result.output
    text = tmp_path / "texts.txt"
    text.write_bytes(b"the cat <mask> the ball.\n\xff\xfe\n")
    filled = run_cli("fill-mask", tiny_roberta, "--file", text)
    assert filled.exit_code == 2 and "'--file: " not in filled.output
    assert last_line(filled).startswith("Error: --file: ") and "line 2, byte 25" in last_line(filled)
