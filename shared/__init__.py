"""The framework-neutral core of pt-mlm and tf-mlm, installed as `mlm_toolkit`; a module per concern.

config, errors   the typed configs and the two kinds of failure   cli, hf_flags, config_files, console: the CLIs
models, hub      the model, and the Hugging Face Hub              data_sources, data, blocks, masking: the data
streaming        the same blocks from a stream                    run      `train`: the run itself
outputs          the output folder and checkpoints                metrics, model_card, convert: what a run leaves
trackers, evaluation, fill_mask: --report-to, `evaluate`, and the half of `MaskFiller` both frameworks share
values: what a config value may be; tokenizer_training: `train-tokenizer`, a tokenizer for a new corpus
compat: the workarounds' version check, and transformers' imports trimmed in our own processes
"""
