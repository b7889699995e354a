"""The command line both tools share: `commands` (train, evaluate, fill-mask, generated from the configs) and
`flags` (Hugging Face spellings, --config files, run_config.yaml)."""
