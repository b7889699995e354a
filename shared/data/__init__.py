"""The data pipeline, in order: `sources` (rows from a file, a Hub dataset or the built-in corpus, to texts),
`blocks` (tokenize, group into blocks on disk, mask the held-out ones once; `prepare_data` is the entry),
`masking` (the collator and whole-word masking), `streaming` (the same blocks from a stream)."""
