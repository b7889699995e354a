"""The `tf-mlm` command line: `tf-mlm train` and `tf-mlm fill-mask`."""

import tf_mlm
from shared.cli import make_cli

main = make_cli(
    "tf-mlm", tf_mlm.__version__, "Fine-tune masked language models with Keras (TensorFlow): compile() and fit().",
    tf_mlm.TFOptions, tf_mlm.train, tf_mlm.MaskFiller,
)

if __name__ == "__main__":
    main()
