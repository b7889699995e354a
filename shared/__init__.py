"""The framework-neutral core of pt-mlm and tf-mlm, installed as `mlm_toolkit`.

config     the typed configs (one dataclass per concern) and errors    cli        the shared click commands
sources    where the model and the rows come from                      blocks     texts -> blocks -> masks
streaming  the same blocks from a stream                               run        `train`: the run itself
outputs    the output folder and checkpoints                           report     results, card, pushes
trackers, evaluation, fill_mask: --report-to, `evaluate`, and the half of `MaskFiller` both frameworks share
"""
