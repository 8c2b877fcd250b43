"""Scoring language models: BLiMP (lm-evaluation-harness protocol, data, prefix-shared scoring) and
held-out perplexity. Imports only ``core`` (level 1)."""
