"""The bundled API reference corpus: every spec is a valid ApiSpec, documents cite their sources, and
FTS5 search finds the right service (and none for unrelated targets)."""
from __future__ import annotations

import json

import pytest

from envfactory.data.corpus import (CORPUS_DIR, Corpus, CorpusError, default_corpus, fts_query, search, services,
                                    spec_for)
from envfactory.envs.validation.contamination import benchmark_overlap
from envfactory.envs.skeleton.spec import ApiSpec

SERVICES = sorted(p.name for p in CORPUS_DIR.iterdir() if (p / "spec.json").is_file())
HEADINGS = ["Overview", "Entities", "Operations", "Constraints", "Errors"]


def test_the_corpus_spans_the_catalog_domains():
    assert len(SERVICES) >= 10 and services() == SERVICES
    domains = {spec_for(s).domain for s in SERVICES}
    assert {"commerce", "travel", "productivity", "communication", "finance", "health", "developer tools",
            "public services"} <= domains


@pytest.mark.parametrize("service", SERVICES)
def test_every_spec_is_a_valid_and_varied_api_spec(service):
    raw = json.loads((CORPUS_DIR / service / "spec.json").read_text())
    spec = ApiSpec.model_validate(raw)
    assert spec.name == service
    assert 3 <= len(spec.entities) <= 5 and 8 <= len(spec.operations) <= 12
    kinds = {o.kind for o in spec.operations}
    assert {"get", "list", "create", "transition"} <= kinds and kinds & {"update", "delete"}
    assert any(o.lookup_by for o in spec.operations), "a lookup by a user-known field"
    assert any(f.references for e in spec.entities for f in e.fields), "entities refer to each other"
    assert not benchmark_overlap(o.name for o in spec.operations)
    for e in spec.entities:
        for f in e.fields:
            if f.references:
                assert f.name.endswith("_id")
                continue
            assert f.examples, f"{service}.{e.name}.{f.name} has no examples for seed data"
            for x in f.examples:
                if f.type == "enum":
                    assert x in f.enum, f"{service}.{e.name}.{f.name}: example {x!r} is not an enum value"
                if f.type in ("integer", "number"):
                    assert isinstance(x, (int, float)) and not isinstance(x, bool)
                    assert (f.minimum is None or x >= f.minimum) and (f.maximum is None or x <= f.maximum), (service, f.name, x)
            if f.unique:
                assert len(set(map(str, f.examples))) == len(f.examples), f"{service}.{f.name}: unique examples repeat"
        if e.display_field:
            assert e.field(e.display_field) is not None


@pytest.mark.parametrize("service", SERVICES)
def test_every_reference_cites_a_url_per_section_and_backs_the_spec_sources(service):
    corpus = default_corpus()
    doc = corpus.document(service)
    text = (CORPUS_DIR / service / "reference.md").read_text()
    assert 2000 <= len(text.encode()) <= 5000
    assert [s.heading for s in doc.sections] == HEADINGS
    assert all(s.url.startswith("https://") for s in doc.sections)
    assert doc.domain == spec_for(service).domain and doc.aliases
    section_urls = {s.url for s in doc.sections}
    assert {s.url for s in spec_for(service).sources} <= section_urls
    # every operation of the spec is documented in the reference
    for op in spec_for(service).operations:
        assert op.name in text, f"{service}: operation {op.name} is not documented in reference.md"


def test_sections_split_into_fact_items_with_parameters_under_operations():
    ops = next(s for s in default_corpus().document("library_lending").sections if s.heading == "Operations")
    items = ops.items()
    assert ("operation", "get_patron: look a patron up by card number.") in items
    assert ("parameter", "cardnumber (string, required): the number on the library card.") in items
    # continuation lines join their bullet
    entities = next(s for s in default_corpus().document("library_lending").sections if s.heading == "Entities")
    patron = next(t for k, t in entities.items() if t.startswith("patron:"))
    assert "restricted (a debarment flag" in patron and "\n" not in patron


@pytest.mark.parametrize("target, service", [
    ("a library lending API", "library_lending"),
    ("online store product catalog with discount codes", "shop_catalog"),
    ("shipping labels and package tracking", "parcel_shipping"),
    ("guided tours and activities booking", "tour_bookings"),
    ("vaccination records", "immunization_registry"),
    ("feature toggles with percentage rollouts", "feature_flags"),
    ("an applicant tracking system (ATS)", "recruiting_pipeline"),
    ("Stripe-style subscriptions", "subscription_billing"),
    ("national park campground reservations", "campsite_reservations"),
    ("video meetings with registration", "meeting_scheduler"),
    ("ATS", "recruiting_pipeline"),       # "ATS" would stem to "at" without the unstemmed name index
    ("course_lms", "course_lms"),         # an exact service name
])
def test_search_finds_the_right_service(target, service):
    corpus = default_corpus()
    assert corpus.best_service(target) == service
    hits = search(target, 3)
    if target != "ATS":
        assert hits[0].service == service
    assert all(h.url.startswith("https://") and h.snippet and h.section in HEADINGS for h in hits)
    assert hits == sorted(hits, key=lambda h: -h.score)


@pytest.mark.parametrize("target", ["weather forecast", "book a table at a restaurant", "music streaming playlists",
                                    "a pet grooming salon booking API", "", "the an api"])
def test_unrelated_targets_match_no_service(target):
    assert default_corpus().best_service(target) is None


def test_queries_are_never_read_as_fts_syntax():
    assert fts_query('library" OR NEAR(x) AND -lending*') == '"library" OR "near" OR "lending"'
    assert search('") * ( -', 5) == []
    assert all(h.service for h in search('") OR * NOT (', 5))  # operators are plain words here, never syntax
    assert search('patrons" AND "holds', 2)[0].service == "library_lending"


def test_a_section_without_a_source_is_a_clear_error(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "reference.md").write_text("# Demo\n\n## Overview\nSource: https://x.test/\nfine\n\n## Entities\n- a thing\n")
    with pytest.raises(CorpusError, match=r"demo/reference.md: section 'Entities' has no 'Source: URL' line"):
        Corpus(tmp_path)


def test_spec_for_an_unknown_or_specless_service(tmp_path):
    with pytest.raises(CorpusError, match="no service 'nope' in the corpus; available: calendar_events"):
        spec_for("nope")
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "reference.md").write_text("# Demo\n\n## Overview\nSource: https://x.test/\nfine\n")
    with pytest.raises(CorpusError, match="service 'demo' has no spec.json"):
        Corpus(tmp_path).spec_for("demo")
