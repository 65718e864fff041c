"""Measuring retrieval: pure metrics, an evaluation run over an engine, the HTML report of misses,
and catalogue hygiene (duplicates across items, photos unlike the rest of their item)."""
