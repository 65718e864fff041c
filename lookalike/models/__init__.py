"""Model files: the catalogue of models (`catalog.py`), the store that fetches and verifies them
(`store.py`, `fetch.py`), ONNX Runtime sessions (`runtime.py`, the only factory), preprocessing as
data (`Preprocess` in `catalog.py`), exports from PyTorch (`export.py`) and int8 (`quantize.py`).
"""
