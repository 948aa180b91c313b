"""Search backends behind one interface, for the Search agent.

``SearchBackend.search(query, *, k) -> list[SearchHit]``. Backends: ``DdgsBackend`` (the live web through
the ``ddgs`` metasearch library, one pinned engine so results are comparable between runs), ``CorpusBackend``
(the bundled FTS5 corpus, offline), ``CachedBackend`` (wraps any backend; answers are stored in SQLite and
replayed exactly), ``FixtureBackend`` (JSON files, for tests) and ``NullBackend``. ``make_backend`` resolves
a name ("ddgs", "corpus", "fixture", "null", "cached:<inner>") as a graph Context would carry it.

Search results are untrusted text from the web. ``SearchHit`` cleans every field on construction: control
characters are removed, whitespace collapsed, lengths capped, angle brackets escaped (so a snippet cannot
close the ``<untrusted>`` tag it is quoted in), and a URL must be http(s). Nothing in a hit is executed.
"""
from __future__ import annotations

import json
import re
import sqlite3
import threading
import unicodedata
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, field_validator

TITLE_LIMIT, SNIPPET_LIMIT, URL_LIMIT = 200, 600, 500


class SearchError(Exception):
    """A search failed for a reason worth telling the user (not a transient error being retried)."""


def clean_text(text: Any, limit: int) -> str:
    """Untrusted text made safe to quote: no control or format characters, single spaces, no angle
    brackets, at most ``limit`` characters."""
    text = unicodedata.normalize("NFKC", str(text or ""))
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text)
    text = " ".join(text.split()).replace("<", "&lt;").replace(">", "&gt;")
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def normalize_query(query: str) -> str:
    """The key a query is cached and looked up under: NFKC, lower case, single spaces."""
    return " ".join(unicodedata.normalize("NFKC", query).lower().split())


class SearchHit(BaseModel):
    model_config = ConfigDict(frozen=True)
    title: str
    url: str
    snippet: str
    source: str  # the backend that found it

    @field_validator("title")
    @classmethod
    def _title(cls, v: Any) -> str:
        return clean_text(v, TITLE_LIMIT)

    @field_validator("snippet")
    @classmethod
    def _snippet(cls, v: Any) -> str:
        return clean_text(v, SNIPPET_LIMIT)

    @field_validator("source")
    @classmethod
    def _source(cls, v: Any) -> str:
        return clean_text(v, 80)

    @field_validator("url")
    @classmethod
    def _url(cls, v: Any) -> str:
        url = "".join(str(v or "").split())
        if not re.match(r"^https?://[^\s/]+", url, re.I):
            raise ValueError(f"not an http(s) URL: {url[:80]!r}")
        if len(url) > URL_LIMIT:
            raise ValueError(f"URL longer than {URL_LIMIT} characters")
        # characters that could break out of a quoted attribute or a tag are percent-encoded
        return url.replace('"', "%22").replace("<", "%3C").replace(">", "%3E").replace("'", "%27")


def hits_from(rows: list[dict[str, Any]], source: str) -> list[SearchHit]:
    """Hits from raw result dicts; rows without a usable URL are skipped, never trusted."""
    out = []
    for row in rows:
        try:
            out.append(SearchHit(title=row.get("title", ""), url=row.get("url") or row.get("href") or "",
                                 snippet=row.get("snippet") or row.get("body") or "", source=source))
        except ValueError:
            continue
    return out


@runtime_checkable
class SearchBackend(Protocol):
    name: str

    def search(self, query: str, *, k: int = 5) -> list[SearchHit]: ...


class NullBackend:
    """Finds nothing (a run that must not search)."""

    name = "null"

    def search(self, query: str, *, k: int = 5) -> list[SearchHit]:
        return []


class CorpusBackend:
    """The bundled API reference corpus (SQLite FTS5); offline and deterministic."""

    name = "corpus"

    def __init__(self, corpus=None, root: str | Path | None = None):
        from envfactory.data.corpus import Corpus, default_corpus
        self.corpus = corpus or (Corpus(root) if root else default_corpus())

    def search(self, query: str, *, k: int = 5) -> list[SearchHit]:
        return [SearchHit(title=f"{h.title}: {h.section}", url=h.url, snippet=h.snippet, source=self.name)
                for h in self.corpus.search(query, k)]


class FixtureBackend:
    """Canned answers from JSON files ``{"query": [{"title", "url", "snippet"}, ...]}`` (queries are
    normalised). An unknown query is an error when ``strict`` (a test missing its fixture), else no hits."""

    name = "fixture"

    def __init__(self, *paths: str | Path, data: dict[str, list[dict[str, Any]]] | None = None, strict: bool = True):
        self.answers: dict[str, list[dict[str, Any]]] = {}
        for path in paths:
            try:
                loaded = json.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise SearchError(f"fixture file {path}: {exc}") from None
            if not isinstance(loaded, dict) or not all(isinstance(v, list) for v in loaded.values()):
                raise SearchError(f"fixture file {path}: expected an object mapping each query to a list of hits")
            self._add(loaded)
        self._add(data or {})
        self.strict = strict

    def _add(self, mapping: dict[str, list[dict[str, Any]]]) -> None:
        for query, rows in mapping.items():
            self.answers[normalize_query(query)] = rows

    def search(self, query: str, *, k: int = 5) -> list[SearchHit]:
        key = normalize_query(query)
        if key not in self.answers:
            if self.strict:
                known = ", ".join(repr(q) for q in sorted(self.answers)) or "none"
                raise SearchError(f"no fixture for query {key!r}; fixtures hold: {known}")
            return []
        return hits_from(self.answers[key], self.name)[:k]


class DdgsBackend:
    """The live web through ``ddgs`` (best effort: undocumented rate limits). One engine is pinned
    (``duckduckgo`` by default) because ``backend="auto"`` shuffles engines between calls. Rate limits
    and timeouts are retried with jittered exponential backoff; other failures raise ``SearchError``."""

    name = "ddgs"
    _gate = threading.Semaphore(2)  # a couple of concurrent searches per process, to stay polite

    def __init__(self, engine: str = "duckduckgo", region: str = "us-en", safesearch: str = "moderate",
                 timeout: int = 10, proxy: str | None = None, attempts: int = 4, backoff: tuple[float, float] = (1.0, 20.0)):
        self.engine, self.region, self.safesearch = engine, region, safesearch
        self.timeout, self.proxy, self.attempts, self.backoff = timeout, proxy, attempts, backoff

    @staticmethod
    def _library():
        try:
            import ddgs
            from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException
        except ImportError as exc:
            raise SearchError(f"the 'ddgs' backend needs the ddgs package (pip install 'ddgs>=9'): {exc}") from None
        return ddgs.DDGS, DDGSException, RatelimitException, TimeoutException

    def search(self, query: str, *, k: int = 5) -> list[SearchHit]:
        from tenacity import (RetryError, retry, retry_if_exception_type, stop_after_attempt,
                              wait_random_exponential)
        ddgs_class, base_error, rate_error, timeout_error = self._library()

        @retry(retry=retry_if_exception_type((rate_error, timeout_error)), stop=stop_after_attempt(self.attempts),
               wait=wait_random_exponential(multiplier=self.backoff[0], max=self.backoff[1]))
        def once() -> list[dict[str, Any]]:
            with self._gate:
                return ddgs_class(proxy=self.proxy, timeout=self.timeout).text(
                    query, region=self.region, safesearch=self.safesearch, max_results=k, backend=self.engine)

        try:
            rows = once()
        except RetryError as exc:
            last = exc.last_attempt.exception()
            raise SearchError(f"ddgs search for {query!r} still failing after {self.attempts} attempts "
                              f"({type(last).__name__}: {last}); try later or set DDGS_PROXY") from None
        except base_error as exc:
            if "no results" in str(exc).lower():
                return []
            raise SearchError(f"ddgs search for {query!r} failed ({type(exc).__name__}: {exc})") from None
        return hits_from(rows or [], self.name)[:k]


class CachedBackend:
    """Wraps a backend: each answer is stored in SQLite under (backend name, normalised query, k) and
    replayed exactly afterwards, so a run can be repeated offline with the same search results."""

    def __init__(self, inner: SearchBackend, path: str | Path = ":memory:"):
        self.inner = inner
        self.name = f"cached:{inner.name}"
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.db = sqlite3.connect(self.path, check_same_thread=False)
        with self.db:
            self.db.execute("CREATE TABLE IF NOT EXISTS search_cache (backend TEXT NOT NULL, query TEXT NOT NULL, "
                            "k INTEGER NOT NULL, hits TEXT NOT NULL, PRIMARY KEY (backend, query, k))")

    def search(self, query: str, *, k: int = 5) -> list[SearchHit]:
        key = (self.inner.name, normalize_query(query), k)
        with self._lock:
            row = self.db.execute("SELECT hits FROM search_cache WHERE backend=? AND query=? AND k=?", key).fetchone()
        if row is not None:
            return [SearchHit.model_validate(h) for h in json.loads(row[0])]
        hits = self.inner.search(query, k=k)
        with self._lock, self.db:
            self.db.execute("INSERT OR REPLACE INTO search_cache VALUES (?, ?, ?, ?)",
                            (*key, json.dumps([h.model_dump() for h in hits])))
        return hits


BACKENDS: dict[str, Callable[..., SearchBackend]] = {
    "ddgs": DdgsBackend, "corpus": CorpusBackend, "fixture": FixtureBackend, "null": NullBackend,
}


def make_backend(name: str, **kw: Any) -> SearchBackend:
    """A backend by name. ``cached:<inner>`` wraps ``<inner>``; its ``cache_path`` keyword (default in
    memory) names the SQLite file, and other keywords go to the inner backend. ``fixture`` takes
    ``paths=[...]`` and/or ``data={...}``."""
    if name.startswith("cached:"):
        path = kw.pop("cache_path", ":memory:")
        return CachedBackend(make_backend(name.split(":", 1)[1], **kw), path)
    if name not in BACKENDS:
        raise SearchError(f"unknown search backend {name!r}; use one of {', '.join(BACKENDS)} or 'cached:<one of them>'")
    if name == "fixture":
        return FixtureBackend(*kw.pop("paths", []), **kw)
    return BACKENDS[name](**kw)
