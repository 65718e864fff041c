"""The edges over the engine: the `lookalike` CLI (`cli*.py`), the HTTP API (`http*.py`), the web
page (`web/`), and the one JSON serialiser of results both use (`results.py`).
"""
