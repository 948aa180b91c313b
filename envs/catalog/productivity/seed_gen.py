"""Deterministic seed data for the productivity environment: python seed_gen.py > seed.json"""
import datetime as dt
import json
import random

r = random.Random(41)
CLOCK = dt.date(2026, 9, 14)
names = ["Ayla Demir", "Ben Okoro", "Cora Lindqvist", "Dan Meyer", "Eva Rossi", "Finn Walsh", "Gia Tanaka", "Hal Novak", "Ines Costa",
         "Jon Berg", "Kim Haddad", "Lou Martin", "Mo Rahman", "Nia Evans", "Oli Sato", "Pam Fischer", "Raj Mehta", "Sia Kowalski",
         "Tom Dubois", "Uma Singh"]
roles = ["engineer", "engineer", "engineer", "designer", "manager", "analyst"]
members = [{"member_id": i + 1, "name": n, "email": n.lower().replace(" ", ".") + "@acme.test", "role": r.choice(roles)} for i, n in enumerate(names)]
proj_names = ["Checkout Redesign", "Mobile Offline Mode", "Billing Migration", "Search Relevance", "Onboarding Flow", "Data Warehouse", "Accessibility Audit", "Partner API"]
projects = [{"project_id": i + 1, "name": n, "owner_id": r.randint(1, 20), "status": "archived" if i == 7 else "active"} for i, n in enumerate(proj_names)]
verbs = ["Design", "Implement", "Review", "Test", "Document", "Refactor", "Measure", "Prototype", "Migrate", "Fix"]
objects = ["login form", "payment retry", "cache layer", "search index", "email templates", "error states", "metrics dashboard",
           "API pagination", "dark mode", "sync conflicts", "invoice export", "feature flags", "rate limiter", "a11y labels"]
tasks, titles = [], set()
for i in range(110):
    p = r.choice(projects[:7]) if i < 100 else projects[7]
    title = f"{r.choice(verbs)} {r.choice(objects)}"
    while (p["project_id"], title) in titles:
        title = f"{r.choice(verbs)} {r.choice(objects)}"
    titles.add((p["project_id"], title))
    status = "done" if p["status"] == "archived" else r.choice(["todo", "todo", "in_progress", "blocked", "done", "done"])
    if p["project_id"] == 7:  # project 7 is finished but not yet archived
        status = "done"
    created = CLOCK - dt.timedelta(days=r.randint(5, 90))
    tasks.append({"task_id": i + 1, "project_id": p["project_id"], "title": title,
                  "assignee_id": r.choice([None] + list(range(1, 21))), "priority": r.choice(["low", "medium", "medium", "high", "urgent"]),
                  "status": status, "due_date": (CLOCK + dt.timedelta(days=r.randint(-10, 40))).isoformat() if r.random() < 0.8 else None,
                  "created_on": created.isoformat()})
deps = []
by_project = {}
for t in tasks:
    by_project.setdefault(t["project_id"], []).append(t)
for pid, ts in by_project.items():
    for a, b in zip(ts, ts[1:]):  # each depends on an earlier task of the same project: no cycles
        if r.random() < 0.35:
            deps.append({"task_id": b["task_id"], "depends_on_id": a["task_id"]})
comments = [{"comment_id": i + 1, "task_id": r.randint(1, 110), "author_id": r.randint(1, 20),
             "body": r.choice(["Looks good to me", "Blocked on API review", "Can we split this?", "Done in staging", "Needs design input"]),
             "posted_on": (CLOCK - dt.timedelta(days=r.randint(0, 30))).isoformat()} for i in range(60)]
entries = [{"entry_id": i + 1, "task_id": r.randint(1, 110), "member_id": r.randint(1, 20), "hours": r.choice([0.5, 1, 1.5, 2, 3, 4]),
            "logged_on": (CLOCK - dt.timedelta(days=r.randint(0, 30))).isoformat()} for i in range(80)]
print(json.dumps({"members": members, "projects": projects, "tasks": tasks, "task_dependencies": deps, "comments": comments,
                  "time_entries": entries}, indent=1))
