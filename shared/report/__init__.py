"""What a finished run leaves for people: `card` (model card, loss curve, results files), `trackers`
(--report-to), `publish` (Hub pushes), `export` (weights for the other framework)."""
