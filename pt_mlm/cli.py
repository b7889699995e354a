"""The `pt-mlm` command line: `pt-mlm train`, `pt-mlm evaluate` and `pt-mlm fill-mask`. Torch is imported
only by a command that needs it, so `--help` and `--version` answer at once."""

import pt_mlm
from mlm_toolkit.cli.commands import make_cli
from pt_mlm.options import PTOptions

main = make_cli(
    "pt-mlm",
    "Fine-tune masked language models with PyTorch and Hugging Face Accelerate.",
    PTOptions,
    train=lambda run, options: pt_mlm.train(run, options),
    filler=lambda model: pt_mlm.MaskFiller(model),
    evaluate=lambda config: pt_mlm.evaluate(config),
    version=pt_mlm.__version__,
)

if __name__ == "__main__":
    main()
