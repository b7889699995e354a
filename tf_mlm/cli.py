"""The `tf-mlm` command line: `tf-mlm train` and `tf-mlm fill-mask`."""

import os
import sys

if "--push-to-hub" in sys.argv:
    # transformers 4.x reaches PushToHubCallback through its Trainer utilities, which fail to import
    # unless torch is visible; only a pushing run pays for that (tf_mlm hides torch otherwise).
    os.environ.setdefault("USE_TORCH", "AUTO")

import tf_mlm  # noqa: E402
from shared.cli import make_cli  # noqa: E402

main = make_cli(
    "tf-mlm", tf_mlm.__version__, "Fine-tune masked language models with Keras (TensorFlow): compile() and fit().",
    tf_mlm.TFOptions, tf_mlm.train, tf_mlm.MaskFiller,
)

if __name__ == "__main__":
    main()
