"""Which articles a search may use: a date range and named sources, from the API's ``since=``,
``until=`` and ``sources=`` or from the question itself ("in 2025", "before March 2024").

Dates are the articles' own (their ``date`` header or front matter); an article without a date
is left out whenever a date range is asked for, since nobody can say it falls inside. A source
matches by file name, outlet (case-insensitive) or the host of the article's URL.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import InputError, show

_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_name) if m}
_MONTHS.update({m.lower(): i for i, m in enumerate(calendar.month_abbr) if m})
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_WHEN = rf"(?:(?P<month>{_MONTH})\.?\s+)?(?P<year>(?:19|20)\d\d)"
_PHRASES = [
    ("between", re.compile(rf"\bbetween\s+{_WHEN}\s+and\s+{_WHEN.replace('month', 'month2').replace('year', 'year2')}\b", re.I)),
    ("in", re.compile(rf"\b(?:in|during)\s+{_WHEN}\b", re.I)),
    ("before", re.compile(rf"\b(?:before|until|till|up\s+to|prior\s+to)\s+{_WHEN}\b", re.I)),
    ("after", re.compile(rf"\b(?:after)\s+{_WHEN}\b", re.I)),
    ("since", re.compile(rf"\b(?:since|from)\s+{_WHEN}\b", re.I)),
]  # fmt: skip


@dataclass(frozen=True)
class Filter:
    """A search restricted to articles dated ``since`` .. ``until`` (inclusive, ISO dates) and,
    when ``sources`` is not empty, to those sources."""

    since: str | None = None
    until: str | None = None
    sources: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.since or self.until or self.sources)

    def describe(self) -> str:
        """For people: "articles dated 2025-01-01 to 2025-12-31, from Example News"."""
        parts = []
        if self.since and self.until:
            parts.append(f"articles dated {self.since} to {self.until}")
        elif self.since:
            parts.append(f"articles dated {self.since} or later")
        elif self.until:
            parts.append(f"articles dated {self.until} or earlier")
        if self.sources:
            parts.append(("articles " if not parts else "") + "from " + ", ".join(self.sources))
        return ", ".join(parts)

    def allows(self, source: str, meta: dict) -> bool:
        """Whether the article ``source`` (its manifest entry ``meta``) is searched."""
        if self.since or self.until:
            date = meta.get("date")
            if not date or (self.since and date < self.since) or (self.until and date > self.until):
                return False
        if self.sources:
            host = (urlsplit(meta["url"]).hostname or "") if meta.get("url") else ""
            names = {
                source.lower(),
                str(meta.get("outlet", "")).lower(),
                host.lower(),
                host.lower().removeprefix("www."),
            }
            if not any(s.lower() in names for s in self.sources):
                return False
        return True

    def merged(self, other: Filter) -> Filter:
        """Both restrictions at once (the API's and the question's)."""
        since = max(filter(None, (self.since, other.since)), default=None)
        until = min(filter(None, (self.until, other.until)), default=None)
        return Filter(since, until, self.sources + tuple(s for s in other.sources if s not in self.sources))


def check(since=None, until=None, sources=None) -> Filter:
    """The API's arguments as a Filter; a bad one is an InputError naming it."""
    return Filter(_date("since", since), _date("until", until, end=True), _sources(sources))


def _date(name: str, value, end: bool = False) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, int) and not isinstance(value, bool) and 1000 <= value <= 9999:
        return f"{value}-12-31" if end else f"{value}-01-01"
    if isinstance(value, str):
        v = value.strip()
        try:
            if re.fullmatch(r"\d{4}", v):
                return f"{v}-12-31" if end else f"{v}-01-01"
            if re.fullmatch(r"\d{4}-\d{2}", v):
                y, m = int(v[:4]), int(v[5:])
                return _month_end(y, m) if end else dt.date(y, m, 1).isoformat()
            return dt.date.fromisoformat(v).isoformat()
        except ValueError:
            pass
    raise InputError(f"{name} must be a date (YYYY-MM-DD, YYYY-MM or YYYY). Currently, it is {show(value)}.")


def _sources(value) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Iterable) or not all(isinstance(s, str) and s.strip() for s in value):
        raise InputError(f"sources must be a list of file names, outlets or web sites. Currently, it is {show(value)}.")
    return tuple(s.strip() for s in value)


def _month_end(year: int, month: int) -> str:
    return dt.date(year, month, calendar.monthrange(year, month)[1]).isoformat()


def _bounds(month: str | None, year: str) -> tuple[str, str]:
    y = int(year)
    if month:
        m = _MONTHS[month.lower().rstrip(".")]
        return dt.date(y, m, 1).isoformat(), _month_end(y, m)
    return f"{y}-01-01", f"{y}-12-31"


def from_question(question: str) -> Filter:
    """The date range a question names ("in 2025", "in June 2025", "before March 2024", "after
    2024", "since 2023", "between 2023 and 2024"); an empty Filter when it names none."""
    for kind, pattern in _PHRASES:
        m = pattern.search(question)
        if not m:
            continue
        first, last = _bounds(m.group("month"), m.group("year"))
        if kind == "between":
            _, last = _bounds(m.group("month2"), m.group("year2"))
            return Filter(first, last) if first <= last else Filter()
        if kind == "in":
            return Filter(first, last)
        if kind == "before":
            day = dt.date.fromisoformat(first) - dt.timedelta(days=1)
            return Filter(None, day.isoformat())
        if kind == "after":
            day = dt.date.fromisoformat(last) + dt.timedelta(days=1)
            return Filter(day.isoformat(), None)
        return Filter(first, None)  # since / from
    return Filter()
