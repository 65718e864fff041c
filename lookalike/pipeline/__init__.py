"""One photo at a time: decode (`decode.py`), detect (`detect.py`), segment and cut out
(`segment.py`, `isolate.py`), the views to embed (`views.py`), embed and augment queries
(`embed.py`), read text (`ocr.py`).
"""
