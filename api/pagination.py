"""limit/offset pagination shared by every list endpoint (newest first)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from api.schemas import Page

T = TypeVar("T")
MAX_LIMIT = 100


@dataclass(frozen=True)
class PageParams:
    limit: int
    offset: int


def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")] = 20,
    offset: Annotated[int, Query(ge=0, description="items to skip")] = 0,
) -> PageParams:
    return PageParams(limit, offset)


PageDep = Annotated[PageParams, Depends(page_params)]


def fetch_page(session: Session, stmt: Select[Any], p: PageParams) -> tuple[list[Any], int]:
    """Rows of one page of ``stmt`` (already ordered) and the total count."""
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = list(session.scalars(stmt.limit(p.limit).offset(p.offset)))
    return rows, int(total)


def make_page(request: Request, items: list[T], total: int, p: PageParams) -> Page[T]:
    """The page with a ``next`` link that keeps the request's other query parameters."""
    nxt = None
    if p.offset + len(items) < total:
        url = request.url.include_query_params(limit=p.limit, offset=p.offset + p.limit)
        nxt = str(url.path) + ("?" + url.query if url.query else "")
        root = str(request.scope.get("root_path", "")).rstrip("/")
        if root and not nxt.startswith(root):
            nxt = root + nxt
    return Page[T](items=items, total=total, limit=p.limit, offset=p.offset, next=nxt)
