"""Config validation: every bad value is caught in the dataclass and names its CLI flag."""

import pytest

from mlm_toolkit.config import DataConfig, HubConfig, RunConfig, TrainConfig
from mlm_toolkit.errors import UsageError
from pt_mlm import PTOptions


@pytest.mark.parametrize(
    "build, flag",
    [
        (lambda: DataConfig(block_size=0), "--block-size"),
        (lambda: DataConfig(mlm_probability=0.0), "--mlm-probability"),
        (lambda: DataConfig(mlm_probability=1.5), "--mlm-probability"),
        (lambda: DataConfig(test_size=1.0), "--test-size"),
        (lambda: DataConfig(max_samples=-3), "--max-samples"),
        (lambda: TrainConfig(per_device_batch_size=0), "--per-device-batch-size"),
        (lambda: TrainConfig(num_epochs=-1), "--num-epochs"),
        (lambda: TrainConfig(max_steps=0), "--max-steps"),
        (lambda: TrainConfig(learning_rate=0), "--learning-rate"),
        (lambda: TrainConfig(weight_decay=-0.1), "--weight-decay"),
        (lambda: HubConfig(push_to_hub=True), "--hub-model-id"),
    ],
)
def test_bad_values_name_their_flag(build, flag):
    with pytest.raises(UsageError) as error:
        build()
    assert str(error.value).startswith(flag + ":")


def test_defaults_are_the_guides_recipe():
    run = RunConfig()
    assert (run.data.max_samples, run.data.test_size, run.data.block_size, run.data.mlm_probability) == (
        5000,
        0.2,
        128,
        0.15,
    )
    assert (run.train.learning_rate, run.train.num_epochs, run.train.weight_decay, run.train.seed) == (
        2e-5,
        3,
        0.01,
        42,
    )
    from mlm_toolkit.data_sources import DEFAULT_COLUMNS

    assert run.model.model == "distilbert/distilroberta-base" and run.data.dataset == "eli5_category"
    # No --text-column: the guide's answers.text where the data has it, else run_mlm.py's "text".
    assert run.data.text_column is None and DEFAULT_COLUMNS == ("answers.text", "text")
    # The Trainer's defaults the guide inherits: gradient clipping at 1.0, linear decay, no warm-up.
    assert (run.train.max_grad_norm, run.train.lr_scheduler, run.train.warmup_steps) == (1.0, "linear", 0)


def test_zero_max_samples_means_all_rows():
    assert DataConfig(max_samples=0).max_samples is None


def test_perplexity_overflow_is_inf_not_a_crash():
    import math

    from mlm_toolkit.metrics import TokenWeightedMean, perplexity

    assert perplexity(1000.0) == math.inf and perplexity(0.0) == 1.0
    mean = TokenWeightedMean()
    mean.add(2.0, 10)
    mean.add(4.0, 30)
    assert mean.mean == 3.5  # weighted by tokens, not the 3.0 a mean of batch means gives


def test_cli_help_shows_defaults_and_version():
    from click.testing import CliRunner

    from pt_mlm import main

    help_text = CliRunner().invoke(main, ["train", "--help"]).output
    for fragment in ("--block-size", "[default: 128]", "--mixed-precision", "--resume", "--push-to-hub", "2e-05"):
        assert fragment in help_text, fragment
    assert "pt-mlm, version" in CliRunner().invoke(main, ["--version"]).output


@pytest.mark.parametrize(
    "build, flag",
    [
        (lambda: TrainConfig(lr_scheduler="cosine_restarts"), "--lr-scheduler"),
        (lambda: TrainConfig(report_to="wandb-typo"), "--report-to"),
    ],
)
def test_python_callers_get_the_clis_choice_lists(build, flag):
    with pytest.raises(UsageError) as error:
        build()
    assert str(error.value).startswith(f"{flag}: must be one of")


def test_framework_options_check_their_choices_from_the_same_lists():
    from tf_mlm import TFOptions

    for build, flag in (
        (lambda: PTOptions(mixed_precision="fp8"), "--mixed-precision"),
        (lambda: PTOptions(attention="flash"), "--attention"),
        (lambda: TFOptions(strategy="tpu"), "--strategy"),
    ):
        with pytest.raises(UsageError) as error:
            build()
        assert str(error.value).startswith(f"{flag}: must be one of")


@pytest.mark.parametrize(
    "build, flag",
    [
        (lambda: PTOptions(gradient_accumulation_steps=0), "--gradient-accumulation-steps"),
        (lambda: PTOptions(save_total_limit=0), "--save-total-limit"),
    ],
)
def test_pytorch_only_options_are_checked_too(build, flag):
    with pytest.raises(UsageError) as error:
        build()
    assert str(error.value).startswith(f"{flag}: must be a positive number")


def test_each_cli_offers_only_the_flags_its_path_honours():
    """Keras keeps one backup and does not accumulate: tf-mlm has neither flag; pt-mlm has both."""
    from click.testing import CliRunner

    from pt_mlm import main as pt_main
    from tf_mlm import main as tf_main

    pt_help = CliRunner().invoke(pt_main, ["train", "--help"]).output
    tf_help = CliRunner().invoke(tf_main, ["train", "--help"]).output
    for flag in ("--gradient-accumulation-steps", "--save-total-limit"):
        assert flag in pt_help and flag not in tf_help, flag
    refused = CliRunner().invoke(tf_main, ["train", "--gradient-accumulation-steps", "2"])
    assert refused.exit_code == 2 and "tf-mlm does not accumulate: raise --per-device-batch-size" in refused.output


def test_warmup_ratio_and_the_checkpoint_policy():
    from mlm_toolkit.run import StepPlan

    plan = StepPlan.make(95, 1, 8, TrainConfig(max_steps=95, warmup_ratio=0.1))
    assert plan.warmup_steps == 10, "rounded up, as the Trainer's get_warmup_steps"
    assert StepPlan.make(95, 1, 8, TrainConfig(max_steps=95, warmup_ratio=0.1, warmup_steps=3)).warmup_steps == 3
    every = TrainConfig(checkpointing_steps="25")
    assert every.checkpointing_steps == 25 and every.checkpoint_every == 25
    assert [every.checkpoints_at(s, epoch_end=False, run_end=s == 60) for s in (25, 30, 50, 60)] == [
        True,
        False,
        True,
        True,  # the end of the run, whatever its step
    ]
    assert TrainConfig().checkpoints_at(12, epoch_end=True, run_end=False)
    assert not TrainConfig(checkpointing_steps="none").checkpoints_at(12, epoch_end=True, run_end=True)
    for bad in ("weekly", "0", "-5"):
        with pytest.raises(UsageError) as error:
            TrainConfig(checkpointing_steps=bad)
        assert str(error.value).startswith("--checkpointing-steps:")
    with pytest.raises(UsageError, match="--warmup-ratio"):
        TrainConfig(warmup_ratio=1.0)


def test_speed_workarounds_need_their_library_versions_and_say_so_once(caplog):
    from packaging.specifiers import SpecifierSet

    from mlm_toolkit.compat import speed_workarounds

    assert speed_workarounds(True, {"numpy": SpecifierSet(">=1")})
    assert not speed_workarounds(False, {"numpy": SpecifierSet(">=1")}) and not caplog.text  # --no-workarounds
    assert not speed_workarounds(True, {"numpy": SpecifierSet("<1")})
    assert "speed workarounds off: numpy" in caplog.text and "(written for <1)" in caplog.text
