"""The fields filters may name: what the manifest records of the catalogue's fields, the
automatic attributes and the payload-indexed fields; users' filters checked against them."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lookalike.engine.part import EnginePart
from lookalike.engine.records import INTERNAL_KEYS
from lookalike.store.base import Condition, Filter, where
from lookalike.store.filters import parse_where
from lookalike.types import Item, JSONValue

if TYPE_CHECKING:
    from lookalike.engine.core import Engine


class FilterFields(EnginePart):
    """One engine's filterable fields, cached until the next write."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self._kinds: dict[str, str] | None = None  # fields filters may name (`filter_fields`)
        self._keyword_fields: dict[str, str] = {}  # those of them with facets

    def forget(self) -> None:
        """The index was written: read the fields again on next use."""
        self._kinds = None

    def record_fields(self, items: Sequence[Item]) -> None:
        """At the end of a run: the manifest records the catalogue's fields (for filter checks)
        and that the views' `pending` flags are reliable (no flag is left set now)."""
        from lookalike.store.filter_check import field_kinds, merge_kinds

        if self.engine.manifest is None:
            return
        seen = field_kinds(
            {k: v for k, v in item.fields.items() if k not in INTERNAL_KEYS} for item in items
        )
        fields = merge_kinds(self.catalogue_fields(), seen)
        if fields != self.engine.manifest.fields or self.engine.manifest.visibility < 1:
            self.engine.manifest = dataclasses.replace(
                self.engine.manifest, fields=fields, visibility=1
            )
            self.engine.manifest.save(self.engine.index_dir)
        self._kinds = None

    def catalogue_fields(self) -> dict[str, str]:
        """The catalogue fields the manifest records; for an index from before they were
        recorded, read from the items' payloads (every centroid: once)."""
        from lookalike.store.filter_check import field_kinds

        if self.engine.manifest is not None and self.engine.manifest.fields:
            return dict(self.engine.manifest.fields)
        return field_kinds(
            {k: v for k, v in rec.payload.items() if k not in INTERNAL_KEYS}
            for rec in self.engine.store.scroll(where("kind", "centroid"))
        )

    def filter_fields(self, *, fresh: bool = False) -> dict[str, str]:
        """Fields filters may name -> kind (text, number, bool, list, object, mixed): the
        catalogue's, the automatic attributes and the payload-indexed ones. Cached until the
        next write (`fresh`: read again)."""
        from lookalike.store.filter_check import merge_kinds, schema_kinds

        if self._kinds is None or fresh:
            schema = self.fields()
            builtin = {"item_id": "text", "colours": "list", "classes": "list", "labels": "list"}
            self._kinds = merge_kinds(builtin, self.catalogue_fields(), schema_kinds(schema))
            # Values are checked through facets, which need a keyword index.
            self._keyword_fields = {k: "text" for k, v in schema.items() if v == "keyword"}
        return dict(self._kinds)

    def user_filter(self, where: str | Filter | None) -> Filter | None:
        """A user's filter (`where` text or a Filter), checked: a field the index does not have or
        a value of another type is a FilterFieldError, a text value no item has a
        FilterValueError suggesting close ones (instead of an empty answer without a word)."""
        from lookalike.errors import FilterFieldError
        from lookalike.store.filter_check import check_filter, check_values

        user = parse_where(where) if isinstance(where, str) or where is None else where
        if user is None or not user.conditions:
            return user
        try:
            check_filter(user, self.filter_fields())
        except FilterFieldError:
            check_filter(user, self.filter_fields(fresh=True))  # another process added fields?
        centroids = Filter((Condition("kind", "eq", "centroid"),))
        check_values(
            user,
            self._keyword_fields,
            count=lambda f: self.engine.store.count(centroids & f),
            facet=lambda name: self.engine.store.facet(name, centroids, limit=1000),
        )
        return user

    def facets(
        self, field_name: str, *, where: str | Filter | None = None, limit: int = 20
    ) -> dict[JSONValue, int]:
        """Value -> number of items with it, among items matching `where`. FilterFieldError for a
        field that is not a keyword-indexed one (only those have facets)."""
        from lookalike.errors import FilterFieldError

        keyword = sorted(k for k, v in self.fields().items() if v == "keyword")
        if field_name not in keyword:
            raise FilterFieldError(
                f"no facets for {field_name!r}: facets count the values of text fields: "
                + (", ".join(keyword) or "none")
            )
        user = self.user_filter(where)
        flt = Filter((Condition("kind", "eq", "centroid"),)) & user
        return self.engine.store.facet(field_name, flt, limit=limit)

    def fields(self) -> dict[str, str]:
        """Catalogue fields users can filter on: name -> kind (keyword, float, bool)."""
        return {
            k: v for k, v in self.engine.store.payload_schema().items() if k not in INTERNAL_KEYS
        }
