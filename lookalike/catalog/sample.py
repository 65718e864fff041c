"""Sample data: the Grocery Store Dataset (Klasson et al., WACV 2019, MIT) as a lookalike catalogue.

`prepare_grocery(data_dir, out_dir)` writes `catalogue.jsonl` (each product: its iconic image plus
its `train/` photos; title, category, description as fields) and `queries.csv` (the `val/` photos).
`fetch_grocery(dest)` downloads the dataset from its public GitHub repository when no local copy
is given; the URL is a parameter so tests run it against a loopback server.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lookalike.errors import CatalogueError

GROCERY_URL = "https://github.com/marcusklasson/GroceryStoreDataset/archive/refs/heads/master.zip"
_MAX_DOWNLOAD = 2 * 1024**3


@dataclass(frozen=True)
class SampleFiles:
    catalogue: Path
    queries: Path
    items: int
    catalogue_images: int
    queries_count: int


def _read_split(data_dir: Path, name: str) -> list[tuple[str, str]]:
    """`train.txt` / `val.txt` lines `path, product_id, coarse_id` -> (absolute path, product id)."""
    path = data_dir / f"{name}.txt"
    if not path.exists():
        raise CatalogueError(f"{path} not found: is {data_dir} the Grocery Store Dataset folder?")
    rows = [[part.strip() for part in line.split(",")] for line in path.read_text().splitlines()]
    return [(str((data_dir / r[0]).resolve()), r[1]) for r in rows if len(r) >= 2 and r[0]]


def prepare_grocery(data_dir: Path, out_dir: Path) -> SampleFiles:
    """Write the grocery catalogue manifest and the val query list into `out_dir`."""
    data_dir = Path(data_dir)
    classes_csv = data_dir / "classes.csv"
    if not classes_csv.exists():
        raise CatalogueError(f"{classes_csv} not found: is {data_dir} the Grocery Store Dataset?")
    out_dir.mkdir(parents=True, exist_ok=True)
    products: dict[str, dict[str, Any]] = {}  # catalogue lines (JSON)
    with open(classes_csv, newline="") as fh:
        reader = csv.reader(fh)
        next(reader)  # header
        for name, class_id, coarse, _coarse_id, iconic, description in reader:
            desc_path = data_dir / description.lstrip("/")
            products[class_id] = {
                "id": class_id,
                "title": name.replace("-", " "),
                "category": coarse,
                "description": desc_path.read_text().strip() if desc_path.exists() else "",
                "images": [str((data_dir / iconic.lstrip("/")).resolve())],
            }
    for path, product in _read_split(data_dir, "train"):
        products[product]["images"].append(path)
    catalogue = out_dir / "catalogue.jsonl"
    with open(catalogue, "w") as fh:
        fh.writelines(json.dumps(line) + "\n" for line in products.values())
    queries = out_dir / "queries.csv"
    val = _read_split(data_dir, "val")
    with open(queries, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "item_id"])
        writer.writerows(val)
    n_images = sum(len(p["images"]) for p in products.values())
    return SampleFiles(catalogue, queries, len(products), n_images, len(val))


def fetch_grocery(
    dest: Path,
    *,
    url: str = GROCERY_URL,
    progress: Callable[[str, int, int], None] | None = None,
) -> Path:
    """Download the dataset's repository archive and unpack its `dataset/` folder into `dest`.

    Returns `dest`. Members are checked so a hostile archive cannot write outside `dest`.
    """
    import httpx

    if (dest / "classes.csv").exists():
        return dest
    notify = progress or (lambda stage, done, total: None)
    buf = io.BytesIO()
    with httpx.stream("GET", url, follow_redirects=True, timeout=60.0) as response:
        if response.status_code != 200:
            raise CatalogueError(f"cannot download {url}: HTTP {response.status_code}")
        total = int(response.headers.get("content-length") or 0)
        for chunk in response.iter_bytes():
            buf.write(chunk)
            if buf.tell() > _MAX_DOWNLOAD:
                raise CatalogueError(f"{url} is larger than {_MAX_DOWNLOAD} bytes")
            notify("download", buf.tell(), total)
    tmp = dest.with_name(dest.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(buf) as archive:
        for member in archive.infolist():
            parts = Path(member.filename).parts
            if "dataset" not in parts or member.is_dir():
                continue
            rel = Path(*parts[parts.index("dataset") + 1 :])
            if rel.is_absolute() or ".." in rel.parts or not rel.parts:
                raise CatalogueError(f"unsafe path in archive: {member.filename}")
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
    if not (tmp / "classes.csv").exists():
        raise CatalogueError(
            f"{url} does not hold the Grocery Store Dataset (no dataset/classes.csv)"
        )
    shutil.rmtree(dest, ignore_errors=True)
    tmp.replace(dest)
    return dest
