"""The `pt-mlm` command line: `pt-mlm train` and `pt-mlm fill-mask`."""

import pt_mlm
from shared.cli import make_cli

main = make_cli(
    "pt-mlm", pt_mlm.__version__, "Fine-tune masked language models with PyTorch and Hugging Face Accelerate.",
    pt_mlm.PTOptions, pt_mlm.train, pt_mlm.MaskFiller,
)

if __name__ == "__main__":
    main()
