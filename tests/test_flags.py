"""A Hugging Face user's habits carry over: run_mlm.py's flag names (dashes or underscores), --fp16/--bf16,
--validation_split_percentage, a --config file whose values the command line overrides, and run_config.yaml,
which repeats a run."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Iterable

import pytest
import yaml
from click.testing import CliRunner
from pt_helpers import run_cli
from test_cli_fuzz import fake_results  # at import: a module with @given tests, never inside one

from mlm_toolkit.cli import make_cli
from mlm_toolkit.hf_flags import ACCEPTED, TRAINER_FLAGS
from mlm_toolkit.values import flag_of


def recording_cli(framework: str = "pt"):
    """The real CLI of a framework, with training replaced by a recorder of what it was asked to do."""
    if framework == "pt":
        from pt_mlm import PTOptions as Options
    else:
        from tf_mlm import TFOptions as Options
    asked = []

    def train(run, options):
        asked.append((run, options))
        return fake_results()

    return make_cli(f"{framework}-mlm", "test", Options, train=train, filler=lambda model: None, version="0"), asked


def invoke(args, framework="pt"):
    cli, asked = recording_cli(framework)
    result = CliRunner().invoke(cli, ["train", *map(str, args)])
    return result, (asked[0] if asked else None)


def test_hugging_face_spellings_set_our_fields(tmp_path):
    result, (run, options) = invoke(
        [
            "--model_name_or_path",
            "m",
            "--dataset_name",
            "d",
            "--dataset_config_name",
            "c",
            "--per_device_train_batch_size",
            "4",
            "--per-device-eval-batch-size",
            "16",
            "--num_train_epochs",
            "2",
            "--max_train_steps",
            "30",
            "--lr_scheduler_type",
            "cosine",
            "--num_warmup_steps",
            "3",
            "--max_seq_length",
            "64",
            "--validation_split_percentage",
            "5",
            "--resume_from_checkpoint",
            "auto",
            "--save_steps",
            "10",
            "--logging_steps",
            "5",
            "--hub_private_repo",
            "--output_dir",
            tmp_path / "out",
            "--do_train",
            "--do_eval",
            "--bf16",
            "--learning_rate",
            "3e-5",
            "--weight_decay",
            "0.1",
            "--line_by_line",
            "--report_to",
            "tensorboard",
        ]
    )
    assert result.exit_code == 0, result.output
    data, train = run.data, run.train
    assert (run.model.model, data.dataset, data.dataset_config, data.block_size) == ("m", "d", "c", 64)
    assert data.test_size == pytest.approx(0.05) and data.line_by_line
    assert (train.per_device_batch_size, train.eval_batch_size, train.num_epochs, train.max_steps) == (4, 16, 2, 30)
    assert (train.lr_scheduler, train.warmup_steps, train.resume, train.checkpointing_steps) == (
        "cosine",
        3,
        "auto",
        10,
    )
    assert (train.learning_rate, train.weight_decay, train.report_to) == (3e-5, 0.1, ("tensorboard",))
    assert run.hub.hub_private and options.log_every == 5 and options.mixed_precision == "bf16"
    assert str(tmp_path / "out") == train.output_dir


def test_fp16_and_bf16_are_each_frameworks_precision():
    for framework, flag, expected in (("tf", "--fp16", "mixed_float16"), ("tf", "--bf16", "mixed_bfloat16")):
        result, (_, options) = invoke([flag], framework)
        assert result.exit_code == 0 and options.mixed_precision == expected, result.output
    result, _ = invoke(["--fp16", "--mixed-precision", "bf16"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "Error: --mixed-precision: give one of --mixed-precision and --fp16, not both"
    )


def test_help_shows_our_names_and_lists_the_aliases_once():
    cli, _ = recording_cli()
    shown = CliRunner().invoke(cli, ["train", "--help"], terminal_width=200).output
    options, _, aliases = shown.partition("Hugging Face spellings")
    assert "--per-device-batch-size INTEGER" in options and "--model TEXT" in options
    for hf in ("--model_name_or_path", "--per_device_train_batch_size", "--fp16", "--validation_split_percentage"):
        assert hf not in options and aliases.count(hf) == 1, hf
    assert "--per_device_batch_size" not in shown  # our underscore spellings work without being listed


def test_a_config_file_gives_the_defaults_and_the_command_line_wins(tmp_path):
    (tmp_path / "run.yaml").write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": "m",
                "dataset": "d",
                "per_device_train_batch_size": 4,
                "learning-rate": 1e-4,
                "report_to": ["tensorboard"],
                "do_train": True,
                "fp16": False,
                "validation_split_percentage": 10,
            }
        )
    )
    result, (run, _) = invoke(["--config", tmp_path / "run.yaml", "--learning-rate", "5e-4"])
    assert result.exit_code == 0, result.output
    assert (run.model.model, run.data.dataset, run.train.per_device_batch_size) == ("m", "d", 4)
    assert run.train.learning_rate == 5e-4, "the command line wins over the file"
    assert run.data.test_size == pytest.approx(0.1) and run.train.report_to == ("tensorboard",)
    assert run.config_format == "yaml"

    (tmp_path / "bad.json").write_text(json.dumps({"learning_rate": 1e-4, "lerning_rate": 2}))
    result, _ = invoke(["--config", tmp_path / "bad.json"])
    assert result.exit_code == 2 and "unknown key 'lerning_rate'" in result.output.strip().splitlines()[-1]
    assert "--config" in result.output.strip().splitlines()[-1] and "Traceback" not in result.output
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    result, _ = invoke(["--config", tmp_path / "list.yaml"])
    assert result.exit_code == 2 and "must hold a mapping" in result.output


def test_a_run_mlm_command_line_runs_unchanged_and_its_run_config_repeats_it(tiny_roberta, tmp_path):
    """The transformers example's command line (local files instead of the Hub), then the same run again
    from the run_config.yaml it wrote."""
    from tiny_models import tiny_corpus

    (tmp_path / "train.txt").write_text("\n".join(tiny_corpus(300)) + "\n")
    (tmp_path / "validation.txt").write_text("\n".join(tiny_corpus(340)[300:]) + "\n")
    result = run_cli(
        "train",
        "--model_name_or_path",
        tiny_roberta,
        "--train_file",
        tmp_path / "train.txt",
        "--validation_file",
        tmp_path / "validation.txt",
        "--per_device_train_batch_size",
        "8",
        "--per_device_eval_batch_size",
        "8",
        "--do_train",
        "--do_eval",
        "--output_dir",
        tmp_path / "test-mlm",
        "--max_seq_length",
        "32",
        "--line_by_line",
        "--learning_rate",
        "1e-3",
        "--max_train_steps",
        "6",
        "--no-tf-weights",
    )
    assert result.exit_code == 0, result.output
    first = json.loads((tmp_path / "test-mlm" / "all_results.json").read_text())
    assert first["data"]["text_column"] == "text" and first["data"]["held_out"].startswith("--validation-file")
    assert first["after"]["eval_loss"] < first["before"]["eval_loss"]
    written = yaml.safe_load((tmp_path / "test-mlm" / "run_config.yaml").read_text())
    assert written["per_device_batch_size"] == 8 and written["line_by_line"] and written["max_steps"] == 6

    again = run_cli("train", "--config", tmp_path / "test-mlm" / "run_config.yaml", "--output-dir", tmp_path / "again")
    assert again.exit_code == 0, again.output
    second = json.loads((tmp_path / "again" / "all_results.json").read_text())
    assert second["loss_log"]["losses"] == first["loss_log"]["losses"], "the same run, step for step"
    repeated = yaml.safe_load((tmp_path / "again" / "run_config.yaml").read_text())
    assert {**repeated, "output_dir": None} == {**written, "output_dir": None}


def test_a_tracker_that_is_not_installed_names_the_package():
    result, _ = invoke(["--report-to", "tensorboard,wandb"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "Error: --report-to: wandb is not installed here: pip install wandb"
    )
    result, _ = invoke(["--report-to", "comet"])
    assert result.exit_code == 2 and "must be one of tensorboard, wandb, mlflow, trackio" in result.output


def test_a_json_config_is_written_back_as_json_and_reads_as_it_was(tmp_path):
    from mlm_toolkit.config import DataConfig, HubConfig, ModelConfig, RunConfig, TrainConfig
    from mlm_toolkit.config_files import config_format, read_config_file, write_run_config
    from pt_mlm import PTOptions

    run = RunConfig(
        DataConfig(dataset="d", line_by_line=True),
        ModelConfig("m"),
        TrainConfig(report_to="tensorboard", checkpointing_steps="7"),
        HubConfig(hub_token="hf_secret"),
        config_format=config_format("given.JSON"),
    )
    path = write_run_config(tmp_path, run.flat(PTOptions()), run.config_format)
    assert path.name == "run_config.json" and "hf_secret" not in path.read_text()
    again = read_config_file(str(path), [DataConfig, ModelConfig, TrainConfig, HubConfig, PTOptions])
    assert again["line_by_line"] is True and again["checkpointing_steps"] == 7
    assert again["report_to"] == "tensorboard" and "hub_token" not in again


def test_trainer_flags_map_to_ours_or_say_what_to_use():
    result, (run, _) = invoke(["--eval_strategy", "epoch", "--save_strategy", "no"])
    assert result.exit_code == 0, result.output
    assert run.train.checkpointing_steps == "none"
    result, (run, _) = invoke(["--evaluation_strategy", "steps", "--eval_steps", "7", "--save_strategy", "steps"])
    assert result.exit_code == 0 and run.train.eval_steps == 7 and run.train.checkpointing_steps == 500
    result, (run, _) = invoke(["--save_strategy", "steps", "--save_steps", "20"])
    assert run.train.checkpointing_steps == 20
    for args, says in [
        (["--eval_strategy", "no"], "--eval-strategy: no: a run always evaluates"),
        (["--eval_strategy", "steps"], "--eval-strategy: steps needs --eval-steps N"),
        (["--logging_dir", "logs"], "--logging-dir: is not taken here: TensorBoard logs go to OUTPUT/runs/"),
        (["--max_train_samples", "10"], "--max-train-samples: is not taken here: it counts blocks"),
        (["--run_name", "x"], "--run-name: is not taken here"),
        (["--disable_tqdm"], "--disable-tqdm: is not taken here"),
        (["--use_slow_tokenizer"], "--use-slow-tokenizer: is not taken here: the fast tokenizer is needed"),
        (["--deepspeed", "ds.json"], "--deepspeed: is not taken here: use accelerate launch --use_deepspeed"),
        (["--data_seed", "3"], "--data-seed: is not taken here: one --seed draws the split"),
        (["--pad_to_max_length"], "--pad-to-max-length: is not taken here"),
        (["--load_best_model_at_end", "--metric_for_best_model", "loss"], "is not taken here: the final model"),
    ]:
        result, asked = invoke(args)
        assert result.exit_code == 2 and says in result.output.strip().splitlines()[-1], (args, result.output)
    result, _ = invoke(["--save_total_limit", "2"], framework="tf")
    assert result.exit_code == 2 and "tf-mlm keeps the newest Keras backup" in result.output
    result, (run, options) = invoke(["--save_total_limit", "2"])
    assert result.exit_code == 0 and options.save_total_limit == 2
    for args, says in [
        (["--gradient_checkpointing"], "--gradient-checkpointing: is not taken here: transformers' TensorFlow"),
        (["--optim", "adamw_torch"], "--optim: is not taken here: tf-mlm trains with transformers' AdamWeightDecay"),
        (["--dataloader_num_workers", "2"], "--dataloader-num-workers: is not taken here: tf-mlm's batches"),
        (["--torch_compile"], "--torch-compile: is not taken here: TensorFlow compiles the step with XLA"),
    ]:
        result, _ = invoke(args, framework="tf")
        assert result.exit_code == 2 and says in result.output.strip().splitlines()[-1], (args, result.output)


def test_the_anchors_flags_that_change_a_run_are_honoured():
    args = ["--optim", "adamw_torch", "--adam_beta1", "0.8", "--adam_beta2", "0.99", "--adam_epsilon", "1e-6"]
    args += ["--with_tracking", "--use_cpu", "--dataloader_num_workers", "2", "--overwrite_cache"]
    args += ["--prediction_loss_only", "--model_revision", "v1", "--trust_remote_code", "--gradient_checkpointing"]
    args += ["--lr_scheduler_type", "polynomial", "--torch_dtype", "bfloat16"]
    result, (run, options) = invoke(args)
    assert result.exit_code == 0, result.output
    assert (run.train.adam_beta1, run.train.adam_beta2, run.train.adam_epsilon) == (0.8, 0.99, 1e-6)
    assert not options.fused_adamw and options.use_cpu and options.loader_workers == 2
    assert options.gradient_checkpointing and options.torch_dtype == "bfloat16"
    assert run.data.overwrite_cache and run.train.lr_scheduler == "polynomial"
    assert run.model.hub_kwargs() == {"revision": "v1", "trust_remote_code": True}
    assert set(run.train.report_to) >= {"tensorboard"}, "--with_tracking: every tracker installed"
    result, (run, options) = invoke(["--no_cuda", "--with_tracking", "--report_to", "none"])
    assert options.use_cpu and run.train.report_to == ()


# A YAML "billion laughs": 9 levels of 9 aliases, a few hundred bytes for 9**9 strings once walked.
ALIAS_BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{level}: &{level} [{','.join([f'*{prev}'] * 9)}]\n" for prev, level in zip("abcdefgh", "bcdefghi", strict=True)
)
BOUNDED_CASES = {
    "bomb.yaml": ALIAS_BOMB + "report_to: *i\n",
    "deep.yaml": "report_to: " + "[" * 5000 + "]" * 5000 + "\n",
    "deep.json": '{"report_to": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "big.yaml": "report_to: [" + ", ".join(["tensorboard"] * 200_000) + "]\n",
    "nested.yaml": "report_to: [[tensorboard]]\n",
}


def test_config_files_are_bounded_before_anything_expands_them(tmp_path):
    """Each refused in one line under a 1 GiB address-space limit (the bomb took 22 GB at 19b5307)."""
    for name, text in BOUNDED_CASES.items():
        (tmp_path / name).write_text(text)
    code = (
        "import json, resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from mlm_toolkit.config import TrainConfig\n"
        "from mlm_toolkit.config_files import read_config_file\n"
        "from mlm_toolkit.errors import UsageError\n"
        "seen = {}\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        seen[path] = read_config_file(path, [TrainConfig])\n"
        "    except UsageError as refused:\n"
        "        seen[path] = str(refused)\n"
        "print(json.dumps(seen))\n"
    )
    paths = [str(tmp_path / name) for name in BOUNDED_CASES]
    done = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = {Path(path).name: said for path, said in json.loads(done.stdout).items()}
    expanded = "is over 10,000 values or 20 levels deep, aliases expanded: not a run's settings"
    assert seen["bomb.yaml"] == f"--config: {str(tmp_path / 'bomb.yaml')!r} {expanded}"
    assert seen["deep.yaml"].endswith("it nests too deep")
    assert seen["deep.json"].endswith("it nests too deep")
    assert seen["big.yaml"].endswith("it is over 1 MB, more than any run's settings take")
    assert seen["nested.yaml"].endswith("report_to must be a list of names, got [['tensorboard']]")
    result, _ = invoke(["--config", tmp_path / "bomb.yaml"])  # and on the command line, one line, exit 2
    assert result.exit_code == 2 and result.output.strip().splitlines()[-1].endswith(expanded)


# What the TRAINER_FLAGS that take a choice become (the others are refused with their reason).
HANDLED = {
    "eval_strategy": "`steps` with --eval-steps N; `epoch` is the default; `no` refused (a run always evaluates)",
    "evaluation_strategy": "as --eval_strategy",
    "save_strategy": "--checkpointing-steps: `no` none, `epoch` epoch, `steps` --save_steps N (or 500)",
    "with_tracking": "--report-to all (every tracker installed) unless --report-to names some",
    "optim": "`adamw_torch_fused` is --fused-adamw, `adamw_torch` --no-fused-adamw",
}

# The flags of run_mlm.py, run_mlm_no_trainer.py and the TrainingArguments an MLM run sets: each CLI takes every
# one (docs/huggingface.md lists what it becomes, generated by `flag_table`; the test below keeps the two equal).
ANCHOR_FLAGS = """
model_name_or_path model_type config_overrides config_name tokenizer_name cache_dir use_fast_tokenizer
model_revision token use_auth_token trust_remote_code torch_dtype low_cpu_mem_usage dataset_name dataset_config_name
train_file validation_file overwrite_cache validation_split_percentage max_seq_length preprocessing_num_workers
mlm_probability line_by_line pad_to_max_length max_train_samples max_eval_samples streaming use_slow_tokenizer
per_device_train_batch_size per_device_eval_batch_size learning_rate weight_decay num_train_epochs max_train_steps
gradient_accumulation_steps lr_scheduler_type num_warmup_steps output_dir seed push_to_hub hub_model_id hub_token
checkpointing_steps resume_from_checkpoint with_tracking report_to overwrite_output_dir do_train do_eval
eval_accumulation_steps adam_beta1 adam_beta2 adam_epsilon max_grad_norm max_steps warmup_ratio warmup_steps
logging_dir logging_steps save_steps save_strategy save_total_limit eval_strategy evaluation_strategy eval_steps
data_seed fp16 bf16 use_cpu no_cuda dataloader_num_workers run_name disable_tqdm load_best_model_at_end
metric_for_best_model hub_strategy hub_private_repo gradient_checkpointing optim full_determinism deepspeed fsdp
ddp_backend prediction_loss_only torch_compile
""".split()


def flag_rows(classes: Iterable[type]) -> dict[str, str]:
    """What each of ANCHOR_FLAGS becomes in the CLI of `classes`."""
    rows: dict[str, str] = {}
    for cls in classes:
        for f in dataclasses.fields(cls):
            ours = f"`{flag_of(f.name)}`"
            rows.setdefault(f.name, ours)
            rows.update({alias: ours for alias in f.metadata.get("hf", ())})
            rows.update({a: f"{ours} N x {scale:g}" for a, scale in f.metadata.get("hf_scaled", {}).items()})
            rows.update({a: f"`{flag_of(f.name)} {value}`" for a, value in f.metadata.get("hf_flags", {}).items()})
    rows.update({name: "accepted: changes nothing here" for name in ACCEPTED})
    for name, kind in TRAINER_FLAGS.items():
        if name not in rows:
            rows[name] = f"refused: {kind}" if isinstance(kind, str) else HANDLED[name]
    return {name: rows.get(name, "") for name in ANCHOR_FLAGS}


def flag_table(clis: dict[str, Iterable[type]]) -> str:
    """The Markdown table of ANCHOR_FLAGS, a column for each CLI (`clis`: its name and classes)."""
    columns = {cli: flag_rows(classes) for cli, classes in clis.items()}
    lines = [f"| flag | {' | '.join(columns)} |", "|---" * (len(columns) + 1) + "|"]
    for name in ANCHOR_FLAGS:
        cells = [columns[cli][name].replace("|", "/") for cli in columns]
        lines.append(f"| `--{name}` | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def test_every_anchor_flag_is_taken_by_both_clis_and_the_table_in_the_docs_is_the_clis():
    import pt_mlm
    import tf_mlm
    from mlm_toolkit.config import DataConfig, HubConfig, ModelConfig, TrainConfig
    from pt_mlm.options import PTOptions
    from tf_mlm.options import TFOptions

    for cli in (pt_mlm.main, tf_mlm.main):  # never "No such option"
        train = cli.commands["train"]
        known = {name for param in train.params for name in (*param.opts, *param.secondary_opts)}
        assert [name for name in ANCHOR_FLAGS if f"--{name}" not in known] == []
    base = (DataConfig, ModelConfig, TrainConfig, HubConfig)
    table = flag_table({"pt-mlm": (*base, PTOptions), "tf-mlm": (*base, TFOptions)})
    docs = (Path(__file__).parent.parent / "docs" / "huggingface.md").read_text()
    documented = docs.split("<!-- flag table: generated -->\n")[1].split("<!-- end of flag table -->")[0]
    assert documented == table, "docs/huggingface.md: paste flag_table's output between its markers"
    assert "| |" not in table.replace(" | |", "")  # every flag says what it becomes


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_only_the_clis_process_trims_transformers_imports(monkeypatch, framework):
    """The CLI's process keeps transformers from importing scikit-learn (process-wide, docs/compat.md); a Python
    caller's gets transformers as shipped, and so does `train --no-workarounds`."""
    import importlib

    from transformers.utils import import_utils

    import mlm_toolkit.compat

    prepared = importlib.import_module(f"{framework}_mlm").prepared
    monkeypatch.setattr(mlm_toolkit.compat, "trim_imports", False)
    monkeypatch.setattr(import_utils, "_sklearn_available", True)
    with prepared():  # a Python caller's first use of the API
        assert import_utils._sklearn_available
    cli, asked = recording_cli(framework)
    seen = []
    for extra in ([], ["--no-workarounds"]):
        assert CliRunner().invoke(cli, ["train", *extra]).exit_code == 0
        with prepared():
            seen.append(import_utils._sklearn_available)
        monkeypatch.setattr(import_utils, "_sklearn_available", True)
    assert seen == [False, True]
