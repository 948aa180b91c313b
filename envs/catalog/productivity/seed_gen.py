"""Deterministic seed data for the productivity environment: python seed_gen.py > seed.json

Two workspaces (a large product company and a small partner studio) with members (admins,
members, guests, a few deactivated), projects (one archived in each, two finished but not archived), tasks in every workflow state with dependencies that respect the
rules (a done task only depends on done tasks), comments, and time entries that respect the daily
cap and never precede the task. The environment's clock is 2026-09-14T09:00:00Z.
"""
import datetime as dt
import json
import random

r = random.Random(20260914)
CLOCK = dt.date(2026, 9, 14)
TODAY = CLOCK.isoformat()


def day(offset):
    return (CLOCK + dt.timedelta(days=offset)).isoformat()


def between(lo, hi):
    """A random ISO day between two ISO days (inclusive)."""
    a, b = dt.date.fromisoformat(lo), dt.date.fromisoformat(hi)
    return (a + dt.timedelta(days=r.randint(0, max(0, (b - a).days)))).isoformat()


WORKSPACES = [
    (1, "Northwind Labs", "northwind-labs", "northwind.test", 26),
    (2, "Juniper Studio", "juniper-studio", "juniper.test", 8),
]
FIRST = ["Ayla", "Ben", "Cora", "Dev", "Elif", "Finn", "Gia", "Hugo", "Ines", "Jonas", "Kira", "Lars", "Maya", "Nikhil",
         "Olga", "Pavel", "Quinn", "Rosa", "Sami", "Tessa", "Umar", "Vera", "Wen", "Xavier", "Yara", "Zeno", "Amara",
         "Bruno", "Chloe", "Dmitri", "Esme", "Farid", "Greta", "Hana", "Ivo", "Jade"]
LAST = ["Demir", "Okoro", "Lindqvist", "Patel", "Rossi", "Walsh", "Tanaka", "Novak", "Costa", "Berg", "Haddad", "Martin",
        "Rahman", "Evans", "Sato", "Fischer", "Mehta", "Kowalski", "Dubois", "Singh", "Moreau", "Alvarez", "Nakamura",
        "Larsen", "Ibrahim", "Keller", "Ferreira", "Nguyen", "Byrne", "Horvat", "Silva", "Wagner", "Yilmaz", "Kim", "Adeyemi", "Costa"]

workspaces = [{"workspace_id": w, "name": n, "slug": s} for w, n, s, _, _ in WORKSPACES]
members = []
used_names = set()
for w, _, _, domain, size in WORKSPACES:
    for k in range(size):
        while True:
            name = f"{r.choice(FIRST)} {r.choice(LAST)}"
            if name not in used_names:
                used_names.add(name)
                break
        role = "admin" if k < (2 if w == 1 else 1) else "guest" if k >= size - (2 if w == 1 else 1) else "member"
        email_domain = "contractors.test" if role == "guest" else domain
        deactivated = k in ((size - 3, size - 4) if w == 1 else (size - 2,))
        members.append({"member_id": len(members) + 1, "workspace_id": w, "name": name,
                        "email": f"{name.lower().replace(' ', '.')}@{email_domain}", "role": role,
                        "active": 0 if deactivated else 1})


def ws_members(w, assignable=True, active_only=True):
    return [m for m in members if m["workspace_id"] == w and (not assignable or m["role"] != "guest")
            and (not active_only or m["active"])]


PROJECTS = {
    1: [("Checkout Redesign", "active"), ("Mobile Offline Mode", "active"), ("Billing Migration", "active"),
        ("Legacy Cleanup 2025", "archived"), ("Partner API", "active"), ("Warehouse Sync", "active")],
    2: [("Brand Refresh", "active"), ("Spring Campaign Site", "active"), ("Portfolio Relaunch", "archived")],
}
projects = []
for w, plist in PROJECTS.items():
    for name, status in plist:
        pid = len(projects) + 1
        if status == "archived":
            start, target = day(-300 + r.randint(0, 40)), day(-120 + r.randint(0, 30))
        else:
            start, target = day(-r.randint(60, 150)), day(r.randint(45, 140))
        projects.append({"project_id": pid, "workspace_id": w, "name": name,
                         "owner_id": r.choice([m for m in ws_members(w) if m["role"] in ("admin", "member")])["member_id"],
                         "status": status, "start_date": start, "target_date": target,
                         "archived_on": day(-r.randint(20, 60)) if status == "archived" else None})
# Billing Migration (3) and Warehouse Sync (6) have finished all their work but are not archived yet.
FINISHED_ACTIVE = (3, 6)

VERBS = ["Design", "Implement", "Review", "Test", "Document", "Refactor", "Measure", "Prototype", "Migrate", "Fix", "Audit", "Plan"]
OBJECTS = {
    1: ["login form", "payment retry", "cache layer", "search index", "email templates", "error states", "metrics dashboard",
        "API pagination", "dark mode", "sync conflicts", "invoice export", "feature flags", "rate limiter", "address autocomplete",
        "cart persistence", "webhook retries"],
    2: ["colour palette", "logo lockups", "landing hero", "icon set", "typography scale", "photo guidelines", "social templates",
        "spacing tokens", "button states", "case study pages", "motion guidelines", "newsletter header", "pricing page", "footer"],
}
DESCRIPTIONS = ["Scope agreed in the kickoff; see the linked brief.", "Follow-up from the last retro.",
                "Requested by the client; keep the change small.", "Part of the quarterly roadmap.",
                "Needed before the next release train.", "Carry-over from the previous milestone.", ""]
BLOCK_REASONS = ["Waiting for API credentials from the vendor", "Needs legal sign-off", "Waiting on design review",
                 "Staging environment is down", "Blocked by upstream schema change"]

tasks = []
titles = set()
for p in projects:
    w = p["workspace_id"]
    count = 8 if p["status"] == "archived" else 9 if p["project_id"] in FINISHED_ACTIVE else r.randint(18, 24)
    for _ in range(count):
        while True:
            title = f"{r.choice(VERBS)} {r.choice(OBJECTS[w])}"
            if (p["project_id"], title) not in titles:
                titles.add((p["project_id"], title))
                break
        if p["status"] == "archived" or p["project_id"] in FINISHED_ACTIVE:
            status = r.choice(["done"] * 5 + ["cancelled"])
        else:
            status = r.choice(["todo"] * 4 + ["in_progress"] * 3 + ["in_review"] * 2 + ["blocked", "done", "done", "done", "cancelled"])
        end = min(p["archived_on"] or TODAY, TODAY)
        created = between(p["start_date"], (dt.date.fromisoformat(end) - dt.timedelta(days=12)).isoformat())
        if status in ("in_progress", "in_review", "done"):
            pool = ws_members(w, active_only=status != "done")
            assignee = r.choice(pool)["member_id"]
        elif status in ("todo", "blocked"):
            assignee = r.choice([None] + [m["member_id"] for m in ws_members(w)] * 2)
        else:
            assignee = r.choice([None, r.choice(ws_members(w))["member_id"]])
        completed = between((dt.date.fromisoformat(created) + dt.timedelta(days=2)).isoformat(), end) if status == "done" else None
        if r.random() < 0.8:
            due = between((dt.date.fromisoformat(created) + dt.timedelta(days=5)).isoformat(), p["target_date"])
        else:
            due = None
        tasks.append({"task_id": len(tasks) + 1, "project_id": p["project_id"], "title": title,
                      "description": r.choice(DESCRIPTIONS), "assignee_id": assignee,
                      "priority": r.choice(["low", "medium", "medium", "medium", "high", "high", "urgent"]),
                      "status": status, "blocked_reason": r.choice(BLOCK_REASONS) if status == "blocked" else None,
                      "estimate_hours": r.choice([None, 2, 4, 6, 8, 12, 16, 24, 40]), "due_date": due,
                      "created_on": created, "completed_on": completed})

# Dependencies: a task depends on an earlier task of its project (so no cycles), and only as the
# rules allow: a done task depends only on done tasks; nobody depends on a cancelled task.
deps = []
by_project = {}
for t in tasks:
    by_project.setdefault(t["project_id"], []).append(t)
for pid, ts in by_project.items():
    for i, b in enumerate(ts[1:], start=1):
        for a in r.sample(ts[:i], min(i, 2)):
            if r.random() >= 0.3 or a["status"] == "cancelled" or b["status"] == "cancelled":
                continue
            if b["status"] == "done" and a["status"] != "done":
                continue
            deps.append({"task_id": b["task_id"], "depends_on_id": a["task_id"]})

COMMENT_BODIES = ["Looks good to me, ship it.", "Can we split this into two smaller tasks?", "Deployed to staging for a first look.",
                  "Needs design input before we continue.", "I left notes on the pull request.", "Moved the deadline after the sync.",
                  "Customer support flagged this again today.", "Blocked until the vendor replies.", "Added screenshots of the edge cases.",
                  "QA found two regressions; details in the test plan.", "Estimate looks low to me.", "Pairing on this tomorrow morning."]
comments = []
for _ in range(230):
    t = r.choice(tasks)
    p = projects[t["project_id"] - 1]
    authors = [m for m in members if m["workspace_id"] == p["workspace_id"]]
    last = min(t["completed_on"] or TODAY, p["archived_on"] or TODAY)
    posted = between(t["created_on"], last)
    hour = r.randint(8, 18) if posted < TODAY else r.randint(7, 8)
    comments.append({"comment_id": 0, "task_id": t["task_id"], "author_id": r.choice(authors)["member_id"],
                     "body": r.choice(COMMENT_BODIES), "posted_at": f"{posted}T{hour:02d}:{r.choice([0, 15, 30, 45]):02d}:00Z"})
comments.sort(key=lambda c: (c["posted_at"], c["task_id"]))
for i, c in enumerate(comments):
    c["comment_id"] = i + 1

NOTES = ["", "", "pairing session", "code review", "investigation", "meeting with stakeholders", "bug fixing", "writing tests"]
entries = []
per_day = {}
loggable = [t for t in tasks if t["status"] in ("in_progress", "in_review", "blocked", "done") and t["assignee_id"]]
while len(entries) < 320:
    t = r.choice(loggable)
    p = projects[t["project_id"] - 1]
    member_id = t["assignee_id"] if r.random() < 0.75 else r.choice(ws_members(p["workspace_id"], active_only=False))["member_id"]
    last = min(t["completed_on"] or TODAY, p["archived_on"] or TODAY, day(-1))
    if last < t["created_on"]:
        continue
    work_date = between(t["created_on"], last)
    hours = r.choice([0.5, 1, 1.5, 2, 2.5, 3, 4, 6])
    if per_day.get((member_id, work_date), 0) + hours > 8:
        continue
    per_day[(member_id, work_date)] = per_day.get((member_id, work_date), 0) + hours
    entries.append({"entry_id": 0, "task_id": t["task_id"], "member_id": member_id, "hours": hours, "work_date": work_date,
                    "note": r.choice(NOTES)})
entries.sort(key=lambda e: (e["work_date"], e["task_id"], e["member_id"]))
for i, e in enumerate(entries):
    e["entry_id"] = i + 1

print(json.dumps({"workspaces": workspaces, "members": members, "projects": projects, "tasks": tasks,
                  "task_dependencies": deps, "comments": comments, "time_entries": entries}, indent=1))
