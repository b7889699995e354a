"""The `tf-mlm` command line: `tf-mlm train` and `tf-mlm fill-mask`."""

import os
import sys

if "--push-to-hub" in sys.argv:
    # transformers 4.x reaches PushToHubCallback through its Trainer utilities, which fail to import
    # unless torch is visible; only a pushing run pays for that (tf_mlm hides torch otherwise).
    os.environ.setdefault("USE_TORCH", "AUTO")

from shared.cli import make_cli  # noqa: E402
from tf_mlm import __version__  # noqa: E402
from tf_mlm.options import TFOptions  # noqa: E402


def train(run, options):
    from tf_mlm.training import train

    return train(run, options)


def mask_filler(model: str):
    from tf_mlm.infer import MaskFiller

    return MaskFiller(model)


main = make_cli("tf-mlm", __version__, "Fine-tune masked language models with Keras (TensorFlow): compile() and fit().",
                TFOptions, train, mask_filler)

if __name__ == "__main__":
    main()
