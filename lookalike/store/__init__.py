"""The seam between the engine and a vector database (`base.py`: the `Store` protocol) and its
backends: Qdrant Edge in-process (`edge.py`), a Qdrant server (`qdrant.py`), exact in-memory
(`memory.py`); `--store` specs (`registry.py`); filters in two syntaxes (`filters.py`).
"""
