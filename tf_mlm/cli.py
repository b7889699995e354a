"""The `tf-mlm` command line: `tf-mlm train`, `tf-mlm evaluate` and `tf-mlm fill-mask`. TensorFlow is
imported only by a command that needs it, so `--help` and `--version` answer at once."""

import os

import tf_mlm
from mlm_toolkit.cli.commands import make_cli
from tf_mlm.options import TFOptions


def train(run, options):
    # transformers 4.x reaches PushToHubCallback through its Trainer utilities, which fail to import unless
    # torch is visible; only a pushing run pays for that (the Keras path hides torch otherwise). Nothing
    # has imported transformers yet in this process, so this is the one place to say it.
    if run.hub.push_to_hub:
        os.environ.setdefault("USE_TORCH", "AUTO")
    return tf_mlm.train(run, options)


main = make_cli(
    "tf-mlm",
    "Fine-tune masked language models with Keras (TensorFlow): compile() and fit().",
    TFOptions,
    train=train,
    filler=lambda model: tf_mlm.MaskFiller(model),
    evaluate=lambda config: tf_mlm.evaluate(config),
    version=tf_mlm.__version__,
)

if __name__ == "__main__":
    main()
