"""The `pt-mlm` command line: `pt-mlm train` and `pt-mlm fill-mask`. Torch is imported only by a command
that needs it, so `--help` and `--version` answer at once."""

from pt_mlm import __version__
from pt_mlm.options import PTOptions
from shared.cli import make_cli


def train(run, options):
    from pt_mlm.training import train

    return train(run, options)


def mask_filler(model: str):
    from pt_mlm.infer import MaskFiller

    return MaskFiller(model)


main = make_cli("pt-mlm", __version__, "Fine-tune masked language models with PyTorch and Hugging Face Accelerate.",
                PTOptions, train, mask_filler)

if __name__ == "__main__":
    main()
