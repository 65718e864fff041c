"""Learning from the catalogue: the linear projection lives in `lookalike.learn.projection` (the
value), `tuning` (its fits), `whitening` and `ranking` (no torch); the network fine-tuning of
`lookalike tune --train` lives here (`train`, `net`: torch, the optional `train` extra, imported
lazily; `data`, `augment`, `swap`, `adapted`, `run`: no torch at import)."""
