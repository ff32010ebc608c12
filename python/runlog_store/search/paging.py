"""Pages of a search: a page of run summaries, and the token that asks for the next one.

A token is the URL-safe base64 of ``{"offset": n, "query": q}``, where ``q`` is a digest of the
filter and the ordering it was made for: a token handed to another search is refused rather
than read as an offset into a different list of runs.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from runlog_store import _core
from runlog_store.exceptions import RunLogStoreError
from runlog_store.ops.runs import RunSummary
from runlog_store.search.query import OrderKey, format_order, parse_order_by

Order = str | Sequence[str] | Sequence[OrderKey] | None


class RunPage(BaseModel):
    """One page of a search: its runs, and the token of the next page (None after the last)."""

    runs: list[RunSummary]
    next_page_token: str | None = None


def _order_keys(order: Order) -> tuple[OrderKey, ...]:
    if order is not None and not isinstance(order, str):
        items = list(order)
        if items and all(isinstance(key, OrderKey) for key in items):
            return tuple(key for key in items if isinstance(key, OrderKey))
        return parse_order_by([str(key) for key in items])
    return parse_order_by(order)


def query_digest(filter_text: str | None, order: Order) -> str:
    """16 hex digits naming a search: its filter as written (blank and None alike) and its
    ordering as read (None and ``"start_time desc"`` alike)."""
    hasher = _core.Hasher("blake3")
    text = (filter_text or "").strip() + "\0" + format_order(_order_keys(order))
    hasher.update(text.encode("utf-8", "surrogatepass"))
    return hasher.hexdigest()[:16]


def encode_page_token(offset: int, filter_text: str | None, order: Order) -> str:
    """The token of the page that starts at ``offset`` of this search."""
    return pack_token({"offset": offset, "query": query_digest(filter_text, order)})


def pack_token(payload: dict[str, Any]) -> str:
    """A token's text: the URL-safe base64 of its JSON, without padding."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=True)
    return base64.urlsafe_b64encode(text.encode("ascii")).decode("ascii").rstrip("=")


def token_refused(token: str) -> RunLogStoreError:
    """The error of a token that is not one of this search's."""
    shown = token if len(token) <= 40 else token[:37] + "..."
    return RunLogStoreError(
        f"page token {shown!r} does not belong to this search (its filter and order_by must "
        "be those of the search that returned it); search again without a token"
    )


def unpack_token(token: str) -> dict[str, Any]:
    """What :func:`pack_token` packed; ``token_refused`` for anything that is no token."""
    try:
        padded = token.strip() + "=" * (-len(token.strip()) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        raise token_refused(token) from None
    if not isinstance(payload, dict):
        raise token_refused(token)
    return payload


def decode_page_token(token: str, filter_text: str | None, order: Order) -> int:
    """The offset a token of this search starts at; RunLogStoreError for a token of another
    search, or anything that is no token."""
    payload = unpack_token(token)
    offset = payload.get("offset")
    if (
        not isinstance(offset, int)
        or isinstance(offset, bool)
        or offset < 0
        or payload.get("query") != query_digest(filter_text, order)
    ):
        raise token_refused(token)
    return offset


__all__ = [
    "RunPage",
    "decode_page_token",
    "encode_page_token",
    "pack_token",
    "query_digest",
    "token_refused",
    "unpack_token",
]
