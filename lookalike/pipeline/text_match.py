"""Match the words read on a query photo against the words read on each catalogue item's photos,
and fuse that evidence with the image similarity.

Catalogue side (indexing time): every photo that passed the OCR gate contributes its normalised
tokens (`lookalike.pipeline.ocr.normalise_tokens`) to its item; `ItemTextIndex` keeps, per item,
in how many of its photos each token was read, and per token in how many items it occurs (idf).
It serialises to JSON (`to_json` / `from_json`) so it can live beside the vector index.

Query side: `ItemTextIndex.score(tokens, item_ids)` gives each candidate a text score in [0, 1]:
the idf-weighted share of the query's *matchable* words that the item's photos also show. A query
word that no catalogue item shows (a price, a date, OCR noise) counts for nothing either way, so a
photo full of shelf labels is not penalised. OCR errors are tolerated through character-trigram
similarity (`fuzzy`): "yogburt" still matches "yoghurt" with weight 0.56.

Fusion (`fuse`): on the top-N image candidates only, `score = cosine + weight * text_score`; the
order of everything below N is left alone. `weight` and N are settings measured on a held-out part
of the catalogue photos (docs/parts/accuracy.md).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from lookalike.pipeline.ocr import token_similarity, trigrams


@dataclass(frozen=True)
class TextMatchSettings:
    """How query words meet catalogue words. Defaults: chosen on a held-out part of the grocery
    catalogue photos (docs/parts/accuracy.md), never on the val queries.

    fuzzy: smallest trigram similarity (0-1) for two different tokens to match; 1.0 = exact only.
        A fuzzy match counts with its similarity as weight.
    min_photos: a token must be read in at least this many of an item's photos to count for it
        (one-off OCR noise drops out; items with a single photo always keep their tokens).
    min_evidence: the denominator of the text score never drops below this (in idf units), so a
        query with a single weak matchable word cannot give a full score of 1.0.
    saturation: a catalogue word counts fully for an item once it was read in this share (0-1] of
        the item's OCR'd photos, proportionally below it. Small values make any repeated reading
        count (a brand name visible on every carton is then no evidence *between* two products
        of that brand, whichever was photographed more often from the front).
    coverage: share (0-1) of the text score that comes from the *item's* side: how much of the
        item's own characteristic text (its words weighted by idf and by how often they were read
        on its photos) the query shows. 0 scores only the query's side, which favours items whose
        photos caught a lot of neighbouring shelf text; see `ItemTextIndex.score`.
    size_power: query words are weighted by the relative height of their letters to this power
        (`lookalike.pipeline.ocr.token_weights`; the caller passes the weights to `score`):
        the product in front of the camera has the largest letters, the shelf around it small ones.
        0 weighs every word alike.
    weight: fusion weight of the text score added to the cosine similarity.
    top_n: fusion re-orders only the first `top_n` image candidates.
    """

    fuzzy: float = 1.0
    min_photos: int = 1
    min_evidence: float = 2.0
    saturation: float = 0.3
    coverage: float = 0.5
    size_power: float = 0.0
    weight: float = 0.1
    top_n: int = 30


@dataclass(frozen=True)
class TextEvidence:
    """One candidate's text score (0-1) and the catalogue words it matched (for "why" displays)."""

    item_id: str
    score: float
    matched: tuple[str, ...] = ()


class _Stats(NamedTuple):
    """An index's statistics for one `min_photos` (`ItemTextIndex.score` reads them)."""

    kept: dict[str, dict[str, float]]  # item -> token -> share (0-1] of its photos showing it
    idf: dict[str, float]  # per token, BM25-style, over items
    grams: dict[str, list[str]]  # trigram -> tokens (inverted index)
    mass: dict[str, float]  # item -> sum of idf * share over its kept words (coverage denominator)


@dataclass
class ItemTextIndex:
    """OCR tokens per catalogue item. Build with `add` (one call per photo) or `from_photos`.

    Add *every* indexed photo, with no tokens when the text gate skipped it: shares of photos
    (how often a word is read on an item) count all of the item's photos.

    photos[item]: number of photos of the item added (read or skipped).
    counts[item][token]: number of those photos in which the token was read.
    """

    photos: Counter[str] = field(default_factory=Counter)
    counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    _cache: dict[int, _Stats] = field(default_factory=dict, repr=False)

    # -- building ----------------------------------------------------------------------------

    def add(self, item_id: str, tokens: Iterable[str]) -> None:
        """Record one photo of `item_id` and the tokens read on it (none when not read)."""
        self.photos[item_id] += 1
        self.counts[item_id].update(set(tokens))
        self._cache.clear()

    @classmethod
    def from_photos(cls, photos: Iterable[tuple[str, Iterable[str]]]) -> ItemTextIndex:
        """An index from `(item_id, tokens of one photo)` pairs."""
        index = cls()
        for item_id, tokens in photos:
            index.add(item_id, tokens)
        return index

    def to_json(self) -> str:
        return json.dumps(
            {"photos": dict(self.photos), "counts": {k: dict(v) for k, v in self.counts.items()}}
        )

    @classmethod
    def from_json(cls, text: str) -> ItemTextIndex:
        data = json.loads(text)
        index = cls()
        index.photos.update(data["photos"])
        for item_id, counts in data["counts"].items():
            index.counts[item_id].update(counts)
        return index

    # -- statistics --------------------------------------------------------------------------

    def has_text(self, item_id: str, min_share: float = 0.3) -> bool:
        """True when some word of the item was read in at least `min_share` (0-1] of its photos.

        A price label caught in one photo of a bag of apples does not make apples a product
        with text; a brand printed on a carton is read in most of its photos.
        """
        counts = self.counts.get(item_id, Counter())
        photos = self.photos.get(item_id, 0)
        return bool(counts) and photos > 0 and max(counts.values()) / photos >= min_share

    def _stats(self, min_photos: int) -> _Stats:
        """What scoring needs for `min_photos` (an item's tokens read in fewer of its photos are
        dropped), computed once until the next `add`."""
        if min_photos not in self._cache:
            kept: dict[str, dict[str, float]] = {}
            for item_id, counts in self.counts.items():
                need = min(min_photos, self.photos[item_id])
                kept[item_id] = {
                    t: c / self.photos[item_id] for t, c in counts.items() if c >= need
                }
            df = Counter(t for tokens in kept.values() for t in tokens)
            n = max(len(self.photos), 1)
            idf = {t: math.log(1.0 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}
            grams: dict[str, list[str]] = defaultdict(list)
            for token in idf:
                for gram in trigrams(token):
                    grams[gram].append(token)
            mass = {
                item_id: sum(idf[t] * share for t, share in shares.items())
                for item_id, shares in kept.items()
            }
            self._cache[min_photos] = _Stats(kept, idf, dict(grams), mass)
        return self._cache[min_photos]

    def expand(self, token: str, settings: TextMatchSettings) -> dict[str, float]:
        """Catalogue tokens that `token` matches, with their similarity (1.0 for itself)."""
        _, idf, grams, _ = self._stats(settings.min_photos)
        if settings.fuzzy >= 1.0:
            return {token: 1.0} if token in idf else {}
        shared = {other for gram in trigrams(token) for other in grams.get(gram, ())}
        sims = {other: token_similarity(token, other) for other in shared}
        return {other: sim for other, sim in sims.items() if sim >= settings.fuzzy}

    # -- scoring -----------------------------------------------------------------------------

    def score(
        self,
        tokens: Sequence[str],
        item_ids: Sequence[str],
        settings: TextMatchSettings | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> list[TextEvidence]:
        """Text score (0-1) of each of `item_ids` (same order) for the query's OCR `tokens`.

        score(item) = sum over distinct query words q of best_t sim(q, t) * idf(t) * share(item, t)
                      / max(min_evidence, sum over q of best_t sim(q, t) * idf(t))
        where t runs over the catalogue words q matches and share(item, t) is min(1, the fraction
        of the item's OCR'd photos in which t was read / `saturation`). Unknown items and empty
        queries score 0. With `coverage` c > 0 the score is (1 - c) * that + c * the item side:
        sum over the item's words t the query shows of sim * idf(t) * share(t) / sum over all
        its words of idf(t) * share(t) (share here unsaturated: its most-read words dominate).
        `weights` (query token -> 0-1, e.g. `ocr.token_weights`, default 1.0) scale each query
        word's part in both sums of the query side, and its similarity on the item side.
        """
        settings = settings or TextMatchSettings()
        kept, idf, _, mass = self._stats(settings.min_photos)
        words = sorted(set(tokens))
        weight_of = (lambda q: 1.0) if weights is None else (lambda q: weights.get(q, 1.0))
        expansions = {
            q: {t: sim * weight_of(q) for t, sim in self.expand(q, settings).items()} for q in words
        }
        evidence = sum(
            (max(sim * idf[t] for t, sim in m.items()) for m in expansions.values() if m), 0.0
        )
        denominator = max(evidence, settings.min_evidence)
        if denominator <= 0.0:  # no query word matches any catalogue word
            return [TextEvidence(item_id, 0.0) for item_id in item_ids]
        # Catalogue words the query shows (any query word matching them), with the best similarity.
        shown: dict[str, float] = {}
        for matches in expansions.values():
            for t, sim in matches.items():
                shown[t] = max(sim, shown.get(t, 0.0))
        out = []
        for item_id in item_ids:
            shares = kept.get(item_id, {})
            total = 0.0
            matched = []
            for matches in expansions.values():
                best, best_t = 0.0, ""
                for t, sim in matches.items():
                    share = shares.get(t)
                    if share:
                        value = sim * idf[t] * min(1.0, share / settings.saturation)
                        if value > best:
                            best, best_t = value, t
                if best_t:
                    total += best
                    matched.append(best_t)
            score = total / denominator
            if settings.coverage > 0.0:
                covered = sum(
                    shown[t] * idf[t] * share for t, share in shares.items() if t in shown
                )
                item_side = covered / mass[item_id] if mass.get(item_id) else 0.0
                score = (1.0 - settings.coverage) * score + settings.coverage * item_side
            out.append(TextEvidence(item_id, score, tuple(matched)))
        return out

    def should_read(
        self, candidate_ids: Sequence[str], *, min_items: float = 0.5, min_share: float = 0.3
    ) -> bool:
        """Query-time OCR gate that costs nothing: read the query photo only when at least
        `min_items` (0-1) of its image candidates (e.g. the top 5) carry text in the catalogue
        (`has_text(item, min_share)`)."""
        if not candidate_ids:
            return False
        with_text = sum(self.has_text(i, min_share) for i in candidate_ids)
        return with_text / len(candidate_ids) >= min_items


def fuse(
    candidates: Sequence[tuple[str, float]],
    evidence: Mapping[str, TextEvidence] | Sequence[TextEvidence],
    settings: TextMatchSettings | None = None,
) -> list[tuple[str, float]]:
    """Image candidates `(item_id, cosine)`, best first -> the same list re-ordered.

    The first `settings.top_n` candidates get `cosine + weight * text_score` and are sorted by it
    (stable, so ties keep the image order); the rest keep their image order and score below them.
    `evidence` gives the text scores (by item id, or a list of `TextEvidence`); missing items score 0.
    """
    settings = settings or TextMatchSettings()
    if not isinstance(evidence, Mapping):
        evidence = {e.item_id: e for e in evidence}
    head = candidates[: settings.top_n]
    bonus = {i: settings.weight * evidence[i].score for i, _ in head if i in evidence}
    fused = sorted(((i, score + bonus.get(i, 0.0)) for i, score in head), key=lambda p: -p[1])
    return fused + list(candidates[settings.top_n :])
