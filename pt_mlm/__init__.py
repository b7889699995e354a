"""PyTorch masked-LM fine-tuning with Accelerate: `pt-mlm train`, `pt_mlm.train`, `pt_mlm.MaskFiller`.

Importing the package loads no framework, so the CLI answers `--help` at once; torch comes with the first
use of `train`, `evaluate` or `MaskFiller`.
"""

from importlib.metadata import version

from pt_mlm.options import PTOptions

__all__ = ["MaskFiller", "PTOptions", "evaluate", "train", "__version__"]
__version__ = version("mlm-toolkit")


def __getattr__(name: str):
    from pt_mlm.environment import prepare

    prepare()  # before transformers is first imported
    if name == "train":
        from pt_mlm.training import train

        return train
    if name == "evaluate":
        from pt_mlm.evaluation import evaluate

        return evaluate
    if name == "MaskFiller":
        from pt_mlm.infer import MaskFiller

        return MaskFiller
    raise AttributeError(f"module 'pt_mlm' has no attribute {name!r}")
