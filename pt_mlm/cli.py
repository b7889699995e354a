"""The `pt-mlm` command line: `pt-mlm train` and `pt-mlm fill-mask`."""

from __future__ import annotations

import click

from shared.cli import build, fill_mask_command, options_from, print_summary, reports_errors, setup_logging
from shared.config import DataConfig, HubConfig, ModelConfig, RunConfig, TrainConfig

import pt_mlm
from pt_mlm.train import PTOptions


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(pt_mlm.__version__, prog_name="pt-mlm")
def main() -> None:
    """Fine-tune masked language models with PyTorch and Hugging Face Accelerate."""


@main.command()
@options_from(DataConfig, ModelConfig, TrainConfig, HubConfig, PTOptions)
@click.option("--verbose", is_flag=True, help="Also show library debug logs.")
@reports_errors
def train(verbose: bool, **values) -> None:
    """Fine-tune a masked LM; defaults are the Hugging Face guide's recipe (DistilRoBERTa on ELI5)."""
    setup_logging(verbose)
    run = RunConfig(build(DataConfig, values), build(ModelConfig, values), build(TrainConfig, values), build(HubConfig, values))
    results = pt_mlm.train(run, build(PTOptions, values))
    print_summary(results, run.train.output_dir)


main.add_command(fill_mask_command(lambda model: pt_mlm.MaskFiller(model)))

if __name__ == "__main__":
    main()
