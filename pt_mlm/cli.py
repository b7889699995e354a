"""The `pt-mlm` command line: `pt-mlm train`, `pt-mlm evaluate` and `pt-mlm fill-mask`. Torch is imported
only by a command that needs it, so `--help` and `--version` answer at once."""

from mlm_toolkit.cli import make_cli
from pt_mlm.options import PTOptions

main = make_cli(
    "pt-mlm",
    "Fine-tune masked language models with PyTorch and Hugging Face Accelerate.",
    PTOptions,
    "pt_mlm",
)

if __name__ == "__main__":
    main()
