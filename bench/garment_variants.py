"""Garment cut-out variants tried by bench/tune_garments.py, from cached masks (uint8 (4, h, w):
skin, clothes, hair, U^2-NetP salient, at the person box's size)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from lookalike.pipeline.boxes import pixels
from lookalike.pipeline.isolate import cut_out, split_garments
from lookalike.types import Box


def _masks(parts: np.ndarray) -> tuple[np.ndarray, ...]:
    p = parts.astype(np.float32) / 255.0
    return p[0], p[1], p[2], p[3]


def variant(name: str, image: Image.Image, box: np.ndarray, parts: np.ndarray) -> Image.Image:
    region = Box(*map(float, box[:4]))
    x1, y1, x2, y2 = pixels(region)
    rgb = np.asarray(image.crop((x1, y1, x2, y2)))
    skin, clothes, hair, sal = _masks(parts)
    opts = dict(o.split("=") if "=" in o else (o, "1") for o in name.split("+")[1:])
    base = name.split("+")[0]
    if base == "whole":
        return image
    if base == "crude":
        on = clothes >= 0.5
        rows = np.nonzero(on.any(axis=1))[0]
        alpha = on.astype(np.float32)
        if rows.size:
            cut = rows[0] + int(0.55 * (rows[-1] + 1 - rows[0]))
            alpha[cut:] = 0
        return cut_out(image, alpha, region, margin=0.0).flatten((255, 255, 255))
    alpha = np.clip(clothes - np.maximum(skin, hair), 0.0, 1.0)
    if "nosal" not in opts:
        alpha = alpha * sal
    split_mode = opts.get("split", "colour")
    if split_mode == "colour":  # the first version: part means only
        split = split_garments(alpha, rgb, min_gap=18.0, band=None)
    elif split_mode == "local":  # the library's default: part means, then a colour edge at the row
        split = split_garments(alpha, rgb, band_gap=float(opts.get("gap", 30)))
    elif split_mode == "none":
        split = None
    else:
        split = globals()[f"split_{split_mode}"](alpha, rgb)
    if split is None and "cap" in opts:  # no waistline seen: assume it at this share of the box
        split = int(float(opts["cap"]) * alpha.shape[0])
    if split is not None:
        alpha[split:] = 0.0
    thr = float(opts.get("thr", 0.5))
    alpha = np.where(alpha >= thr, alpha, 0.0).astype(np.float32)
    if "largest" in opts:
        alpha = _largest(alpha)
    if "fill" in opts:
        image, alpha = _fill(image, alpha, (x1, y1, x2, y2))
    if (alpha >= 0.5).mean() < 0.01:
        return image.crop((x1, y1, x2, y2))
    aspect = float(opts["aspect"]) if "aspect" in opts else None
    margin = float(opts.get("margin", 0.05))
    bg = tuple(int(v) for v in opts.get("bg", "255,255,255").split(","))
    return cut_out(image, alpha, region, margin=margin, aspect=aspect).flatten(bg)


def _largest(alpha: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    lab, n = ndimage.label(alpha >= 0.5)
    if n <= 1:
        return alpha
    sizes = ndimage.sum(np.ones_like(lab), lab, range(1, n + 1))
    keep = np.isin(lab, 1 + np.nonzero(sizes >= 0.15 * sizes.max())[0])
    return np.where(keep, alpha, 0.0).astype(np.float32)


def _fill(image: Image.Image, alpha: np.ndarray, rect: tuple[int, int, int, int]):
    """Holes inside the garment's silhouette (an arm across it) painted over from the cloth around
    them (OpenCV Telea inpainting) and made opaque."""
    import cv2
    from scipy import ndimage

    on = alpha >= 0.5
    holes = ndimage.binary_fill_holes(on) & ~on
    if not holes.any():
        return image, alpha
    x1, y1, x2, y2 = rect
    crop = np.asarray(image.crop(rect)).copy()
    painted = cv2.inpaint(crop, holes.astype(np.uint8) * 255, 5, cv2.INPAINT_TELEA)
    full = np.asarray(image).copy()
    full[y1:y2, x1:x2] = painted
    alpha = np.where(holes, 1.0, alpha).astype(np.float32)
    return Image.fromarray(full), alpha
