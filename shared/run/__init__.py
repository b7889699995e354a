"""One training run: `skeleton.train` is the run both frameworks share (setup, evaluate before, fit,
evaluate after, save); `outputs` (the output folder, checkpoints), `identity` (what a resume must share),
`results` and `metrics` (what a run measured), `models` (which model to load), `evaluation` (`evaluate`)."""
