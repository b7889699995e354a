"""PyTorch masked-LM fine-tuning with Hugging Face Accelerate: `pt-mlm train`, `pt_mlm.MaskFiller`.

Importing the package loads no framework: `train` and `MaskFiller` import torch when first used.
"""

__version__ = "0.1.0"
__all__ = ["MaskFiller", "PTOptions", "train", "__version__"]


def __getattr__(name: str):
    if name == "train":
        from pt_mlm.training import train

        return train
    if name == "MaskFiller":
        from pt_mlm.infer import MaskFiller

        return MaskFiller
    if name == "PTOptions":
        from pt_mlm.options import PTOptions

        return PTOptions
    raise AttributeError(f"module 'pt_mlm' has no attribute {name!r}")
