"""The `pt-mlm` command line: `pt-mlm train` and `pt-mlm fill-mask`. Torch is imported only by a command
that needs it, so `--help` and `--version` answer at once."""

from pt_mlm import __version__
from pt_mlm.options import PTOptions
from mlm_toolkit.cli import make_cli

main = make_cli(
    "pt-mlm",
    __version__,
    "Fine-tune masked language models with PyTorch and Hugging Face Accelerate.",
    PTOptions,
    train="pt_mlm:train",
    filler="pt_mlm:MaskFiller",
)

if __name__ == "__main__":
    main()
