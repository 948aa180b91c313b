"""The bundled corpus of API reference documents, searchable offline with SQLite FTS5.

Each service is a folder ``data/corpus/<service>/`` holding ``reference.md`` (written for this project,
paraphrasing a real public API; every ``## Section`` names the URL it paraphrases on a ``Source:`` line)
and ``spec.json`` (an ``ApiSpec`` for it). The index covers one row per section and lives in memory:
the corpus is small, so building it costs milliseconds and there is no cache file to go stale.

Section kinds map to research fact kinds: Overview -> overview, Entities -> entity, Operations ->
operation (an indented bullet under an operation -> parameter), Constraints -> constraint, Errors -> error.
"""
from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from envfactory.envs.skeleton.spec import ApiSpec

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"

SECTION_KINDS = {"overview": "overview", "entities": "entity", "operations": "operation",
                 "constraints": "constraint", "errors": "error"}
# Words that say nothing about which service is meant ("an API for ..."): never matched on their own.
STOPWORDS = frozenset("""a an and api apis app application for from in of on or platform rest service services
system the to tool tools web with endpoint endpoints like similar simple build make model at by is it as be
my our we you your that this which who can are was me let lets style based kind sort""".split())
_WORD = re.compile(r"[A-Za-z0-9]+")
_SOURCE = re.compile(r"^Source:\s*(\S+)\s*$", re.M)


class CorpusError(Exception):
    """A corpus document is malformed, or a service is unknown."""


@dataclass(frozen=True)
class Section:
    service: str
    title: str      # the document's title
    heading: str    # the section heading, e.g. "Operations"
    url: str
    body: str

    @property
    def kind(self) -> str:
        return SECTION_KINDS.get(self.heading.lower(), "overview")

    def items(self) -> list[tuple[str, str]]:
        """(fact kind, text) for each bullet, nested bullets under operations becoming parameters;
        text outside bullets counts as one item per paragraph."""
        out: list[tuple[str, str]] = []
        for para in re.split(r"\n\s*\n", self.body):
            current: list[str] | None = None
            kind = self.kind
            for line in para.splitlines():
                stripped = line.strip()
                if not stripped or stripped.startswith("### "):
                    continue
                nested = line.startswith(("  - ", "    - ", "\t- "))
                if stripped.startswith("- "):
                    if current:
                        out.append((kind, " ".join(current)))
                    kind = "parameter" if nested and self.kind == "operation" else self.kind
                    current = [stripped[2:]]
                elif current is not None:
                    current.append(stripped)
                else:
                    current = [stripped]
            if current:
                out.append((kind, " ".join(current)))
        return out


@dataclass(frozen=True)
class CorpusHit:
    service: str
    title: str
    section: str
    url: str
    snippet: str
    score: float  # higher is better (negated bm25)


@dataclass(frozen=True)
class ServiceMatch:
    service: str
    name_hits: int    # query words found in the service's name, title or aliases
    coverage: float   # share of query words its document contains
    score: float      # bm25 of its best sections


@dataclass
class Document:
    service: str
    title: str
    domain: str
    aliases: str = ""
    sections: list[Section] = field(default_factory=list)


def parse_reference(service: str, text: str) -> Document:
    """Split a reference.md into its title, domain and sections; each section must name its source URL."""
    title_match = re.search(r"^# (.+)$", text, re.M)
    if not title_match:
        raise CorpusError(f"{service}/reference.md: no '# Title' line")
    domain_match = re.search(r"^Domain:\s*(.+)$", text, re.M)
    aliases_match = re.search(r"Also\s+known\s+as:\s*(.+?)(?:\n\n|\n## |\Z)", text, re.S)
    doc = Document(service, title_match.group(1).strip(), domain_match.group(1).strip() if domain_match else "",
                   " ".join(aliases_match.group(1).split()) if aliases_match else "")
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    for i in range(1, len(parts) - 1, 2):
        heading, body = parts[i].strip(), parts[i + 1]
        src = _SOURCE.search(body)
        if not src:
            raise CorpusError(f"{service}/reference.md: section {heading!r} has no 'Source: URL' line")
        doc.sections.append(Section(service, doc.title, heading, src.group(1), _SOURCE.sub("", body).strip()))
    if not doc.sections:
        raise CorpusError(f"{service}/reference.md: no '## Section' headings")
    return doc


def fts_query(text: str) -> str:
    """An FTS5 MATCH expression from free text: its meaningful words, OR-ed, each quoted (so no user
    text is ever read as FTS5 syntax). Empty when nothing meaningful is left."""
    words = [w.lower() for w in _WORD.findall(text)]
    kept = list(dict.fromkeys(w for w in words if w not in STOPWORDS and len(w) > 1))
    return " OR ".join(f'"{w}"' for w in kept)


class Corpus:
    """The documents under ``root`` and an FTS5 index over their sections."""

    def __init__(self, root: str | Path = CORPUS_DIR):
        self.root = Path(root)
        if not self.root.is_dir():
            raise CorpusError(f"corpus directory {self.root} does not exist")
        self.documents: dict[str, Document] = {}
        for folder in sorted(p for p in self.root.iterdir() if (p / "reference.md").is_file()):
            self.documents[folder.name] = parse_reference(folder.name, (folder / "reference.md").read_text(encoding="utf-8"))
        self._specs: dict[str, ApiSpec] = {}
        self.db = sqlite3.connect(":memory:", check_same_thread=False)
        # porter stemming: "lending" finds "lend", "libraries" finds "library"
        self.db.execute("CREATE VIRTUAL TABLE sections USING fts5(service, title, heading, url UNINDEXED, body, "
                        "tokenize='porter unicode61')")
        self.db.executemany("INSERT INTO sections VALUES (?, ?, ?, ?, ?)",
                            [(s.service.replace("_", " "), s.title, s.heading, s.url, s.body)
                             for d in self.documents.values() for s in d.sections])
        # names without stemming (service, title, "Also known as" list): "ATS" must not become "at"
        self.db.execute("CREATE VIRTUAL TABLE names USING fts5(service UNINDEXED, words, tokenize='unicode61')")
        self.db.executemany("INSERT INTO names VALUES (?, ?)",
                            [(d.service, f"{d.service.replace('_', ' ')} {d.title} {d.aliases}") for d in self.documents.values()])

    @property
    def services(self) -> list[str]:
        return list(self.documents)

    def search(self, query: str, k: int = 5) -> list[CorpusHit]:
        """The ``k`` best sections for ``query`` (bm25; the service name and title weigh most)."""
        match = fts_query(query)
        if not match or k <= 0:
            return []
        rows = self.db.execute(
            "SELECT service, title, heading, url, snippet(sections, 4, '', '', ' … ', 32), "
            "bm25(sections, 8.0, 4.0, 1.0, 0.0, 1.0) AS rank FROM sections WHERE sections MATCH ? "
            "ORDER BY rank LIMIT ?", (match, k)).fetchall()
        return [CorpusHit(service.replace(" ", "_"), title, heading, url, " ".join(snippet.split()), -rank)
                for service, title, heading, url, snippet, rank in rows]

    def rank_services(self, query: str) -> list[ServiceMatch]:
        """Services that plausibly match ``query``, best first. A service qualifies when more than half
        of the query's words are in its name, title or aliases, or in its document; among those, name
        matches count first, then coverage, then bm25 ("book a table" must not pick the library)."""
        terms = [t.strip('"') for t in fts_query(query).split(" OR ") if t]
        if not terms:
            return []
        named: dict[str, int] = {}
        covered: dict[str, int] = {}
        for term in terms:
            for (service,) in self.db.execute("SELECT service FROM names WHERE names MATCH ?", (f'"{term}"',)):
                named[service] = named.get(service, 0) + 1
            for (service,) in self.db.execute("SELECT DISTINCT service FROM sections WHERE sections MATCH ?", (f'"{term}"',)):
                service = service.replace(" ", "_")
                covered[service] = covered.get(service, 0) + 1
        scores: dict[str, list[float]] = {}
        for hit in self.search(query, 60):
            scores.setdefault(hit.service, []).append(hit.score)
        out = []
        for service in set(named) | set(covered):
            coverage = covered.get(service, 0) / len(terms)
            if named.get(service, 0) / len(terms) > 0.5 or coverage > 0.5:
                top = sorted(scores.get(service, []), reverse=True)[:3]  # a few strong sections, not many weak ones
                out.append(ServiceMatch(service, named.get(service, 0), coverage, sum(top)))
        return sorted(out, key=lambda m: (m.name_hits, m.coverage, m.score), reverse=True)

    def best_service(self, query: str) -> str | None:
        """The service ``query`` names or describes best (an exact service name wins), or None."""
        exact = query.strip().lower().replace(" ", "_")
        if exact in self.documents:
            return exact
        ranked = self.rank_services(query)
        return ranked[0].service if ranked else None

    def document(self, service: str) -> Document:
        if service not in self.documents:
            raise CorpusError(f"no service {service!r} in the corpus; available: {', '.join(self.services)}")
        return self.documents[service]

    def spec_for(self, service: str) -> ApiSpec:
        self.document(service)
        if service not in self._specs:
            path = self.root / service / "spec.json"
            if not path.is_file():
                raise CorpusError(f"service {service!r} has no spec.json in {path.parent}")
            self._specs[service] = ApiSpec.model_validate(json.loads(path.read_text(encoding="utf-8")))
        return self._specs[service]


@lru_cache(maxsize=1)
def default_corpus() -> Corpus:
    return Corpus()


def search(query: str, k: int = 5) -> list[CorpusHit]:
    """Search the bundled corpus."""
    return default_corpus().search(query, k)


def spec_for(service: str) -> ApiSpec:
    """The bundled ``ApiSpec`` of a corpus service."""
    return default_corpus().spec_for(service)


def services() -> list[str]:
    return default_corpus().services
