"""Search agent: a synthesis target ("a library lending API") -> a ``ResearchBrief`` (cited facts + ``ApiSpec``).

Two tiers, labelled in ``ResearchBrief.tier``:
- ``offline-corpus`` (no model): the bundled corpus is searched for the target, the best-matching service
  is chosen, its reference sections become facts (each citing the section's URL) and its ``spec.json``
  is the spec. Deterministic; no model output is pretended.
- ``model``: the given backend is searched, the hits are quoted inside ``<untrusted>`` tags in the prompt
  ``search_agent/brief`` (v2 asks for a ``BriefDraft``), and the model answers through
  ``invoke_structured`` (bounded retries). Facts citing a URL that is not one of the hits are dropped
  and counted; the brief's and spec's sources are the hits actually cited.

``research`` returns a ``ResearchResult``: the brief plus what the caller records as provenance
(prompt ref and model name, both None offline), the hits, the dropped facts and token usage.
Search hits are data: nothing in them selects a branch here; only the model reads them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pydantic import BaseModel, Field

from envfactory.data.corpus import Corpus, default_corpus
from envfactory.envs.runtime.manifest import Source
from envfactory.envs.skeleton.spec import ApiSpec, Fact, ResearchBrief
from envfactory.prompts.registry import PromptRef, default_registry

from envfactory.agents.models import model_name
from envfactory.agents.search_backends import CachedBackend, CorpusBackend, SearchBackend, SearchHit
from envfactory.agents.structured import invoke_structured

PROMPT_ID = "search_agent/brief"
OFFLINE_TIER = "offline-corpus"


class ResearchError(Exception):
    """Research found nothing to build from (the message says what is available instead)."""


class BriefDraft(BaseModel):
    """What the model writes; ``research`` turns it into a ``ResearchBrief`` after checking citations."""

    service: str = Field(description="short snake_case name of the service")
    summary: str = Field(description="what the service keeps and lets clients do")
    facts: list[Fact] = Field(description="facts read in the search results, each citing its result's url")
    spec: ApiSpec


@dataclass
class ResearchResult:
    brief: ResearchBrief
    prompt_ref: PromptRef | None = None   # None in the offline tier
    model: str | None = None              # the model's name; None in the offline tier
    hits: list[SearchHit] = field(default_factory=list)
    dropped_facts: list[Fact] = field(default_factory=list)
    attempts: int = 0
    usage: dict[str, int] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return len(self.dropped_facts)


def research(target: str, *, backend: SearchBackend | None = None, model: Any = None, prompt_version: str = "latest",
             k: int = 8, max_retries: int = 2, corpus: Corpus | None = None, retry=None) -> ResearchResult:
    """Research ``target``: offline from the corpus when ``model`` is None, else with the model over ``backend``."""
    if not target or not target.strip():
        raise ResearchError("the research target is empty; name a service or describe one (e.g. 'a library lending API')")
    if model is None:
        return _offline(target, corpus or _corpus_of(backend))
    if backend is None:
        raise ResearchError("the model tier needs a search backend (e.g. make_backend('cached:ddgs'))")
    return _with_model(target, backend, model, prompt_version, k, max_retries, retry)


def _corpus_of(backend: SearchBackend | None) -> Corpus:
    """The corpus behind a corpus backend (possibly cached); the bundled one otherwise."""
    while isinstance(backend, CachedBackend):
        backend = backend.inner
    return backend.corpus if isinstance(backend, CorpusBackend) else default_corpus()


def _offline(target: str, corpus: Corpus) -> ResearchResult:
    service = corpus.best_service(target)
    if service is None:
        raise ResearchError(f"no corpus service matches {target!r}; available services: {', '.join(corpus.services)} "
                            f"(configure a model and a search backend to research other targets)")
    doc = corpus.document(service)
    spec = corpus.spec_for(service)
    facts, sources = [], {}
    for section in doc.sections:
        sources.setdefault(section.url, Source(title=f"{doc.title}: {section.heading}", url=section.url,
                                               note="paraphrased in the bundled corpus"))
        facts += [Fact(kind=kind, text=text[:2000], source_url=section.url) for kind, text in section.items()]
    for s in spec.sources:  # the spec may cite pages no section paraphrases
        sources.setdefault(s.url, s)
    overview = next((s.body for s in doc.sections if s.kind == "overview"), spec.description)
    brief = ResearchBrief(target=target, service=service, summary=" ".join(overview.split())[:1000], facts=facts,
                          sources=list(sources.values()), spec=spec, tier=OFFLINE_TIER)
    hits = [SearchHit(title=f"{h.title}: {h.section}", url=h.url, snippet=h.snippet, source="corpus")
            for h in corpus.search(target, 8) if h.service == service]
    return ResearchResult(brief=brief, hits=hits)



def _with_model(target: str, backend: SearchBackend, model: Any, prompt_version: str, k: int,
                max_retries: int, retry=None) -> ResearchResult:
    hits = backend.search(target, k=k)
    if not hits:
        raise ResearchError(f"the {backend.name!r} search backend found nothing for {target!r}")
    rendered = default_registry().render(PROMPT_ID, prompt_version, target=target,
                                         results=[h.model_dump() for h in hits])
    result = invoke_structured(model, rendered.messages(), BriefDraft, max_retries=max_retries, retry=retry)
    draft = result.value
    by_url = {h.url: h for h in hits}
    kept = [f for f in draft.facts if f.source_url in by_url]
    dropped = [f for f in draft.facts if f.source_url not in by_url]
    today = date.today().isoformat()
    cited = list(dict.fromkeys(f.source_url for f in kept)) or list(by_url)
    sources = [Source(title=by_url[u].title, url=u, retrieved=today, note=f"found by the {backend.name} backend")
               for u in cited]
    spec_sources = [s for s in draft.spec.sources if s.url in by_url] or sources
    spec = draft.spec.model_copy(update={"sources": spec_sources})
    brief = ResearchBrief(target=target, service=draft.service, summary=draft.summary, facts=kept,
                          sources=sources, spec=spec, tier="model")
    return ResearchResult(brief=brief, prompt_ref=rendered.ref, model=model_name(model), hits=hits,
                          dropped_facts=dropped, attempts=result.attempts, usage=result.usage)
