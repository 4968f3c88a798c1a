"""The plan's ``filterAssets`` in Python: filter and sort a list of assets in memory.

This is the "before" of the search benchmarks (what the browser does with every asset loaded) and
the oracle of the search tests. It follows the plan line by line, with the semantics that
:mod:`reference.search.service` makes precise where the TypeScript leaves them open:

* the query is a case-insensitive substring (``str.lower``, the same as PostgreSQL's ``lower``
  and ``ILIKE`` for the ASCII prompts of the fixtures);
* ``localeCompare`` (locale-dependent) becomes code-point order, as ``COLLATE "C"``;
* ``Array.prototype.sort`` is stable, so the plan's ties keep input order, which is arbitrary;
  ties here are broken by ``id`` in the sort's direction, so the order is total;
* the date range is the half-open ``[start_at, end_before)`` of the parsed query (inclusive
  bounds, a date-only end covering its whole day);
* dismissed assets are dropped unless asked for (the plan filters the workspace list before).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

import orjson

from reference.assets import Asset
from reference.search.query import SearchQuery, SortKey, SortOrder

DISMISSED_KEY: Final = "workspace_dismissed"


def json_text(value: Any) -> str | None:
    """``metadata->>key`` as PostgreSQL renders it: strings as they are, other JSON as text."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def is_dismissed(asset: Asset) -> bool:
    return json_text(asset.metadata.get(DISMISSED_KEY)) == "true"


SORT_KEYS: Final[dict[SortKey, Callable[[Asset], Any]]] = {
    SortKey.DATE: lambda a: a.created_at,
    SortKey.PROMPT: lambda a: a.prompt,
    SortKey.QUALITY: lambda a: a.quality,
    SortKey.MODEL: lambda a: a.model_type or "",
}


def asset_filter(search: SearchQuery) -> Callable[[Asset], bool]:
    """Whether an asset matches ``search``'s query and filters."""
    needle = search.q.lower()

    def keep(asset: Asset) -> bool:
        if search.q and needle not in asset.prompt.lower():
            return False
        if search.type is not None and asset.type != search.type:
            return False
        if search.quality is not None and asset.quality != search.quality:
            return False
        if search.model is not None and (asset.model_type or "") != search.model:
            return False
        if search.status is not None and asset.status != search.status:
            return False
        if search.start_at is not None and asset.created_at < search.start_at:
            return False
        if search.end_before is not None and asset.created_at >= search.end_before:
            return False
        return search.include_dismissed or not is_dismissed(asset)

    return keep


def filter_assets(assets: Iterable[Asset], search: SearchQuery) -> list[Asset]:
    keep = asset_filter(search)
    key = SORT_KEYS[search.sort]
    return sorted(
        (a for a in assets if keep(a)),
        key=lambda a: (key(a), a.id),
        reverse=search.order is SortOrder.DESC,
    )
