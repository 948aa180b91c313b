"""Seed rows for a skeleton package: deterministic for (spec, seed), realistic from field names and
examples, every foreign key valid, unique fields unique (ignoring case), enums spread over their values.

Two promises the test writer relies on: rows carry explicit ids 1..n in order; and for every entity
the last fifth of its rows (at least one, when it has two or more) is never referenced, so a delete
can succeed, while row 1 is referenced by the first row of each child table, so a delete can be refused.
"""
from __future__ import annotations

import datetime as dt
import math
import random
import re
from typing import Any

from envfactory.envs.skeleton.plan import creation_order, referencing
from envfactory.envs.skeleton.spec import ApiSpec, EntitySpec, FieldSpec

FIRST = ["Ada", "Bruno", "Chiara", "Dmitri", "Elena", "Farah", "Gustavo", "Hana", "Ivan", "Jia", "Kofi", "Lena",
         "Mateo", "Nadia", "Omar", "Priya", "Quentin", "Rosa", "Samir", "Tessa", "Umar", "Valeria", "Wen", "Ximena",
         "Yusuf", "Zoe", "Aiko", "Bilal", "Carmen", "Diego", "Esther", "Felix", "Grace", "Hugo", "Ines", "Jonas"]
LAST = ["Okafor", "Lindqvist", "Moreau", "Tanaka", "Haddad", "Novak", "Castillo", "Brennan", "Kowalski", "Mensah",
        "Rossi", "Schmidt", "Nguyen", "Patel", "Duarte", "Eriksen", "Fischer", "Garcia", "Horvat", "Ivanova",
        "Jensen", "Kim", "Laurent", "Murphy", "Nakamura", "Oliveira", "Petrov", "Quinn", "Reyes", "Silva"]
COMPANIES = ["Atlas Joinery", "Brightline Studio", "Cobalt Logistics", "Dunmore Bakery", "Elm Street Dental",
             "Fjord Analytics", "Granite Legal", "Harbor Yoga", "Indigo Print", "Juniper Farms", "Kestrel Media",
             "Lumen Architects", "Marlow Coffee", "Northwind Cycles", "Orchid Florals", "Pinecone Toys"]
CITIES = ["Lisbon", "Toronto", "Osaka", "Nairobi", "Valencia", "Melbourne", "Denver", "Tallinn", "Porto", "Ghent",
          "Montreal", "Auckland", "Kyoto", "Seville", "Bergen", "Austin"]
STREETS = ["Maple Avenue", "Harbour Road", "King Street", "Elm Close", "Station Lane", "Riverside Drive", "Oak Row"]
ADJECTIVES = ["Quiet", "Golden", "Northern", "Hidden", "Bright", "Silver", "Wild", "Gentle", "Bold", "Crimson",
              "Open", "Little", "Modern", "Ancient", "Urban", "Coastal"]
NOUNS = ["Harbor", "Garden", "Summit", "River", "Lantern", "Orchard", "Compass", "Meadow", "Bridge", "Forest",
         "Atlas", "Beacon", "Canyon", "Signal", "Voyage", "Workshop"]
SENTENCES = ["Requested by phone; confirm details by email.", "Priority for the next review.",
             "Follow up before the end of the week.", "Customer asked for a paper copy.",
             "Checked and approved by the team lead.", "Waiting on a reply from the other party.",
             "Moved from the previous system during migration.", "Handle with care; see earlier notes.",
             "Recurring item, same terms as last time.", "Flagged for the quarterly audit."]
PERSON_ENTITIES = {"customer", "member", "user", "patient", "employee", "person", "contact", "client", "author",
                   "guest", "student", "owner", "driver", "agent", "subscriber", "attendee", "passenger", "staff",
                   "doctor", "physician", "teacher", "instructor", "reviewer", "assignee", "tenant", "applicant",
                   "candidate", "volunteer", "donor", "buyer", "seller", "traveler", "traveller", "rider", "player"}
COMPANY_WORDS = ("company", "organization", "organisation", "vendor", "supplier", "merchant", "employer", "brand",
                 "carrier", "manufacturer", "publisher", "business")
FUTURE_WORDS = ("due", "deadline", "expir", "end", "until", "scheduled", "start", "check_in", "check_out", "departure",
                "arrival", "appointment", "event", "deliver", "renew")


QUALIFIERS = ("amber", "birch", "cedar", "coral", "dune", "ember", "fern", "garnet", "harbor", "indigo", "juniper",
              "kestrel", "linen", "maple", "meadow", "nova", "olive", "pebble", "quartz", "river", "saffron", "timber",
              "umber", "violet", "willow", "zephyr")


def _qualified(base: str, n: int) -> str:
    """``base`` made distinct by one or two qualifier words, in the base's own style
    ('canvas-tote-bag' -> 'canvas-tote-bag-cedar', 'Canvas Tote Bag' -> 'Canvas Tote Bag Cedar',
    'FREESHIP' -> 'FREESHIP-CEDAR')."""
    words = [QUALIFIERS[n % len(QUALIFIERS)]]
    if n >= len(QUALIFIERS):
        words.append(QUALIFIERS[(n // len(QUALIFIERS)) % len(QUALIFIERS)])
    if " " in base.strip():
        return " ".join([base, *(w.capitalize() for w in words)])
    sep = re.search(r"[-_.]", base)
    words = [w.upper() for w in words] if base.isupper() else words
    return (sep.group(0) if sep else "-").join([base, *words])


def _words(name: str) -> set[str]:
    return set(name.split("_"))


def _referable(total: int) -> int:
    """How many of an entity's rows (the first ones) other rows may point at."""
    return total - max(1, total // 5) if total >= 2 else total


def _named(f: FieldSpec, word: str) -> bool:
    return f.name.startswith(word + "_") or f.name.endswith("_" + word) or f.name == word or "_" + word + "_" in f.name


def _is_person(entity: EntitySpec, f: FieldSpec) -> bool:
    if f.name in ("first_name", "last_name", "full_name", "contact_name"):
        return True
    prefix = f.name[:-5] if f.name.endswith("_name") else None
    if prefix and prefix in PERSON_ENTITIES:
        return True
    return f.name == "name" and entity.name in PERSON_ENTITIES


def _valid_example(f: FieldSpec, v: Any) -> bool:
    if f.type in ("string", "text", "email", "date", "datetime", "enum"):
        if not isinstance(v, str) or (f.required and not v):
            return False
        if f.type == "enum":
            return v in f.enum
        if f.type == "email":
            return re.fullmatch(r"[^@\s]+@[^@\s.]+\.[^@\s]+", v) is not None
        if f.type == "date":
            try:
                dt.date.fromisoformat(v)
                return len(v) == 10
            except ValueError:
                return False
        if f.type == "datetime":
            return re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", v) is not None
        return True
    if f.type == "boolean":
        return isinstance(v, bool)
    if f.type in ("integer", "number"):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (f.type == "integer" and not float(v).is_integer()):
            return False
        return (f.minimum is None or v >= f.minimum) and (f.maximum is None or v <= f.maximum)
    return False


class SeedWriter:
    def __init__(self, spec: ApiSpec, seed: int, clock: str):
        self.spec = spec
        self.rng = random.Random(f"{spec.name}:{seed}")
        self.clock = dt.datetime.fromisoformat(clock.replace("Z", "+00:00"))
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.counts = self._row_counts()

    # -- public
    def build(self) -> dict[str, list[dict[str, Any]]]:
        for e in creation_order(self.spec):
            self.rows[e.table_name] = self._entity_rows(e)
        return self.rows

    # -- per entity
    def row_count(self, e: EntitySpec) -> int:
        return self.counts[e.name]

    def _row_counts(self) -> dict[str, int]:
        """seed_rows, adjusted so tests can always succeed: an entity other rows reference has at least two
        rows (its last fifth, at least one row, stays unreferenced so a delete or a new one-to-one child can
        succeed), and a one-to-one child never outnumbers its parent's referable rows (the child shrinks,
        never below what its own children need; the parent grows when it must)."""
        one_to_one = [(e.name, f.references) for e in self.spec.entities for f in e.fields
                      if f.references and f.unique and f.required and f.references != e.name]
        need = {e.name: 2 if referencing(self.spec, e) else 1 for e in self.spec.entities}
        changed = True
        while changed:  # minimums only grow, along acyclic references: this ends
            changed = False
            for child, parent in one_to_one:
                while _referable(need[parent]) < need[child]:
                    need[parent] += 1
                    changed = True
        counts = {e.name: max(e.seed_rows, need[e.name]) for e in self.spec.entities}
        for e in creation_order(self.spec):  # parents first, so caps cascade down
            for child, parent in one_to_one:
                if child == e.name:
                    counts[child] = max(need[child], min(counts[child], _referable(counts[parent])))
        return counts

    def _entity_rows(self, e: EntitySpec) -> list[dict[str, Any]]:
        n = self.row_count(e)
        rows: list[dict[str, Any]] = [{e.id_field: i + 1} for i in range(n)]
        people = [(self.rng.choice(FIRST), self.rng.choice(LAST)) for _ in range(n)]
        for f in e.fields:
            if f.type == "enum":
                values = self._spread(self._state_priority(e, f), n)
            elif f.references:
                values = self._references(e, f, n)
            else:
                values = self._column(e, f, n, people)
            if not f.required and not f.unique and not f.references and f.type not in ("boolean", "enum"):
                # a few blanks, never in row 1 (tests read row 1 as the typical row)
                values = [None if i and self.rng.random() < 0.12 else v for i, v in enumerate(values)]
            for row, v in zip(rows, values):
                row[f.name] = v
        self._order_date_pairs(e, rows)
        return rows

    def _state_priority(self, e: EntitySpec, f: FieldSpec) -> list[str]:
        """Enum values ordered so that, even with fewer rows than values, every transition on the field
        finds a row it applies to and a row it refuses."""
        first: list[str] = []
        for op in self.spec.operations:
            t = op.transition
            if op.entity == e.name and t is not None and t.field == f.name:
                first.append(t.from_states[0])
                first += [v for v in f.enum if v not in t.from_states][:1]
        return list(dict.fromkeys(first + list(f.enum)))

    def _spread(self, values: list[Any], n: int) -> list[Any]:
        seq = [values[i % len(values)] for i in range(n)]
        self.rng.shuffle(seq)
        return seq

    def _references(self, e: EntitySpec, f: FieldSpec, n: int) -> list[int | None]:
        parent = self.spec.entity(f.references)
        total = n if parent.name == e.name else len(self.rows[parent.table_name])
        usable = _referable(total)  # the tail stays unreferenced
        out: list[int | None] = []
        if f.unique and parent.name != e.name:  # one-to-one: distinct parents, never the tail
            head = list(range(2, usable + 1))
            self.rng.shuffle(head)
            ids = [1, *head][:n]
            return ids + [None] * (n - len(ids))
        for i in range(n):
            if parent.name == e.name:  # self-reference: an earlier row, or none
                choices = list(range(1, min(i, usable) + 1))
                out.append(self.rng.choice(choices) if choices and (i == 1 or self.rng.random() < 0.7) else None)
            elif i == 0:
                out.append(1)
            elif not f.required and self.rng.random() < 0.12:
                out.append(None)
            else:
                out.append(self.rng.randint(1, usable))
        return out

    def _column(self, e: EntitySpec, f: FieldSpec, n: int, people) -> list[Any]:
        examples = [v for v in f.examples if _valid_example(f, v)]
        if f.unique:
            return self._unique(e, f, n, examples, people)
        if f.type == "boolean":
            return [self.rng.random() < 0.7 if not examples else self.rng.choice(examples) for _ in range(n)]
        if examples and f.type not in ("email",):
            return [examples[i % len(examples)] if i < len(examples) else self.rng.choice(examples) for i in range(n)]
        return [self._value(e, f, i, people[i]) for i in range(n)]

    def _unique(self, e: EntitySpec, f: FieldSpec, n: int, examples: list[Any], people) -> list[Any]:
        seen: set = set()
        out = []
        for i in range(n):
            candidate = examples[i] if i < len(examples) else None
            attempt = 0
            while candidate is None or self._key(candidate) in seen:
                attempt += 1
                candidate = self._unique_candidate(e, f, i, attempt, examples, people[i])
            seen.add(self._key(candidate))
            out.append(candidate)
        return out

    @staticmethod
    def _key(v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v

    def _unique_candidate(self, e: EntitySpec, f: FieldSpec, i: int, attempt: int, examples, person) -> Any:
        if f.type == "integer":  # consecutive numbers from the minimum (or 1000); scanning past collisions
            low = int(f.minimum) if f.minimum is not None else (1000 if f.maximum is None or f.maximum >= 1000 + e.seed_rows else 1)
            return low + i + attempt - 1
        if f.type == "number":
            low = f.minimum if f.minimum is not None else 1.0
            return round(low + i + attempt * 0.01, 2)
        if f.type in ("date", "datetime"):
            day = (self.clock - dt.timedelta(days=i + attempt * e.seed_rows)).date()
            return day.isoformat() if f.type == "date" else f"{day.isoformat()}T09:00:00Z"
        base = self._value(e, f, i, person) if not examples else examples[i % len(examples)]
        if attempt == 1 and not examples and f.type != "email":
            return base
        if f.type == "email":
            local, _, domain = str(base).partition("@")
            return f"{local}{i + attempt}@{domain}" if attempt > 1 else base
        m = re.search(r"(\d+)$", str(base))
        if m:  # 'ORD-1001' -> 'ORD-1043'
            return str(base)[: m.start()] + str(int(m.group(1)) + i + attempt * e.seed_rows).zfill(len(m.group(1)))
        return _qualified(str(base), i * 7 + attempt)  # a word, not the row number: ids must not hide in values

    def sample(self, e: EntitySpec, f: FieldSpec, i: int) -> Any:
        """One plausible value of a text field for a new row (the test writer's fresh values)."""
        examples = [v for v in f.examples if _valid_example(f, v)]
        if examples and f.type != "email" and not f.unique:
            return self.rng.choice(examples)
        return self._value(e, f, i, (self.rng.choice(FIRST), self.rng.choice(LAST)))

    # -- one value from the field's name and type
    def _value(self, e: EntitySpec, f: FieldSpec, i: int, person: tuple[str, str]) -> Any:
        name, words, r = f.name, _words(f.name), self.rng
        if f.type == "email":
            domains = sorted({str(x).split("@")[1] for x in f.examples if _valid_example(f, x)}) or \
                ["example.com", "example.org", "example.net"]
            return f"{person[0].lower()}.{person[1].lower()}@{r.choice(domains)}"
        if f.type == "date":
            return self._date(name, r).isoformat()
        if f.type == "datetime":
            day = self._date(name, r)
            return f"{day.isoformat()}T{r.randint(8, 17):02d}:{r.choice([0, 15, 30, 45]):02d}:00Z"
        if f.type == "integer":
            return int(self._number(f, words, r, integer=True))
        if f.type == "number":
            return self._number(f, words, r, integer=False)
        if f.type == "text" or words & {"description", "notes", "note", "comment", "body", "message", "bio",
                                        "summary", "details", "reason", "content"}:
            return r.choice(SENTENCES)
        # strings
        if name == "first_name":
            return person[0]
        if name == "last_name":
            return person[1]
        if _is_person(e, f):
            return f"{person[0]} {person[1]}"
        if words & set(COMPANY_WORDS) or (name == "name" and e.name in COMPANY_WORDS):
            return r.choice(COMPANIES)
        if "phone" in words or "mobile" in words:
            return f"+1-555-{r.randint(100, 999):03d}-{r.randint(1000, 9999)}"
        if "city" in words:
            return r.choice(CITIES)
        if words & {"address", "street"}:
            return f"{r.randint(1, 240)} {r.choice(STREETS)}"
        if words & {"zip", "postcode", "postal"}:
            return f"{r.randint(10000, 99999)}"
        if "currency" in words:
            return r.choice(["USD", "EUR", "GBP"])
        if "country" in words:
            return r.choice(["Portugal", "Canada", "Japan", "Kenya", "Spain", "Australia"])
        if words & {"url", "website", "link"}:
            return f"https://{r.choice(NOUNS).lower()}-{i + 1}.example.com"
        if words & {"code", "sku", "number", "reference", "ref", "token", "slug", "handle", "tag", "isbn"}:
            prefix = "".join(w[0] for w in e.name.split("_")).upper() + (e.name[1:3].upper() if "_" not in e.name else "")
            return f"{prefix}-{1001 + i}"
        if words & {"title", "name", "subject", "label", "headline"}:
            return f"{r.choice(ADJECTIVES)} {r.choice(NOUNS)}"
        return f"{f.name.replace('_', ' ').capitalize()} {i + 1}"

    def _date(self, name: str, r: random.Random) -> dt.date:
        today = self.clock.date()
        if "birth" in name or name in ("dob",):
            return dt.date(r.randint(1950, 2006), r.randint(1, 12), r.randint(1, 28))
        if any(w in name for w in FUTURE_WORDS):
            return today + dt.timedelta(days=r.randint(-60, 120))
        return today - dt.timedelta(days=r.randint(0, 730))

    @staticmethod
    def _number(f: FieldSpec, words: set[str], r: random.Random, integer: bool) -> float:
        low, high = 1, 100
        if words & {"price", "amount", "total", "cost", "fee", "balance", "subtotal", "charge", "fare"}:
            low, high = 5, 500
        elif words & {"salary", "income"}:
            low, high = 30000, 150000
        elif words & {"budget", "limit", "credit"}:
            low, high = 1000, 50000
        elif words & {"rating", "stars", "score", "priority", "level"}:
            low, high = 1, 5
        elif words & {"percent", "percentage", "rate", "discount", "tax"}:
            low, high = 0, 30
        elif words & {"quantity", "qty", "count", "copies", "seats", "units", "guests", "nights"}:
            low, high = 1, 12
        elif words & {"capacity", "stock", "inventory"}:
            low, high = 0, 200
        elif "year" in words:
            low, high = 1960, 2026
        elif "age" in words:
            low, high = 18, 90
        elif words & {"minutes", "duration", "length"}:
            low, high = 15, 180
        # the name's usual range, inside the field's declared bounds
        lo_bound = f.minimum if f.minimum is not None else -math.inf
        hi_bound = f.maximum if f.maximum is not None else math.inf
        if max(low, lo_bound) <= min(high, hi_bound):
            low, high = max(low, lo_bound), min(high, hi_bound)
        elif f.minimum is not None or f.maximum is not None:
            low = f.minimum if f.minimum is not None else f.maximum - 100
            high = f.maximum if f.maximum is not None else f.minimum + 100
        if integer:
            return r.randint(math.ceil(low), math.floor(high)) if math.ceil(low) <= math.floor(high) else math.ceil(low)
        return round(min(high, max(low, r.uniform(low, high))), 2)

    def _order_date_pairs(self, e: EntitySpec, rows: list[dict[str, Any]]) -> None:
        """Ends after starts: a field named like an end gets its start sibling plus a few days."""
        pairs = [("start", "end"), ("check_in", "check_out"), ("departure", "arrival"), ("issued", "due"),
                 ("from", "to"), ("opened", "closed"), ("created", "updated")]
        for start_word, end_word in pairs:
            starts = [f for f in e.fields if f.type in ("date", "datetime") and _named(f, start_word) and not f.unique]
            ends = [f for f in e.fields if f.type in ("date", "datetime") and _named(f, end_word) and not f.unique]
            if not starts or not ends or starts[0] is ends[0] or starts[0].type != ends[0].type:
                continue
            s, t = starts[0], ends[0]
            for row in rows:
                if not (row[s.name] and row[t.name]):
                    continue
                if s.type == "date":
                    end = dt.date.fromisoformat(row[s.name]) + dt.timedelta(days=self.rng.randint(1, 21))
                    row[t.name] = end.isoformat()
                else:  # a datetime span lasts minutes or hours, not weeks
                    begin = dt.datetime.fromisoformat(row[s.name].replace("Z", "+00:00"))
                    end = begin + dt.timedelta(minutes=self.rng.choice([30, 45, 60, 90, 120, 180]))
                    row[t.name] = end.strftime("%Y-%m-%dT%H:%M:%SZ")


def generate_seed(spec: ApiSpec, seed: int, clock: str) -> dict[str, list[dict[str, Any]]]:
    return SeedWriter(spec, seed, clock).build()
