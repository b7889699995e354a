"""The framework-neutral core of pt-mlm and tf-mlm, installed as `mlm_toolkit`.

config.py   the typed configs both CLIs and the Python API build (one dataclass per concern)
data/       the data pipeline: `blocks.prepare_data` reads rows (`sources`), tokenizes and groups them
            into blocks on disk, and masks the held-out blocks once (`masking`); `streaming` for streams
run/        one training run: `skeleton.train` (setup, evaluate, fit, save) around a framework's
            backend, the output folder and checkpoints, resume identity, results, model resolution
report/     what a run leaves for people: model card and loss curve, trackers, Hub pushes, exports
cli/        the click commands both CLIs share, the Hugging Face flag spellings and --config files
"""
