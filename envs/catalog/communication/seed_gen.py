"""Deterministic seed data for the communication environment: python seed_gen.py > seed.json

Four audiences with subscribers (tags, consent sources, some unsubscribed), saved segments, and a
campaign history: sent campaigns were delivered, in date order, only to the people subscribed at
the time and inside the campaign's segment; a hard bounce cleaned the address, so it got nothing
afterwards. Drafts and scheduled campaigns wait in the future. The clock is 2026-04-10T12:00:00Z.
"""
import datetime as dt
import json
import random

r = random.Random(4107)
CLOCK = dt.date(2026, 4, 10)
TODAY = CLOCK.isoformat()


def day(offset):
    return (CLOCK + dt.timedelta(days=offset)).isoformat()


AUDIENCES = [
    (1, "Garden Club Weekly", "Willow Lane Garden Club", "news@willowlanegardens.test", ["vip", "beginner", "local", "seed-swap", "volunteer"]),
    (2, "Indie Games Digest", "Pixel Post", "digest@pixelpost.test", ["beta-tester", "pc", "console", "vip", "devlog"]),
    (3, "City Runners", "City Runners Club", "hello@cityrunners.test", ["marathon", "beginner", "trail", "local", "volunteer"]),
    (4, "Corner Bakery News", "Corner Bakery", "bread@cornerbakery.test", ["wholesale", "local", "gluten-free", "vip", "workshop"]),
]
FIRST = "Ana Bo Cyra Dee Eli Fay Gil Hal Ivy Jo Kai Lux Max Ned Ola Pip Quin Rei Sol Tal Uli Val Wes Xia Yuki Zed Aiko Bram Cleo Dario".split()
LAST = "Park Moss Hale Reed Lowe Frost Gray Hart Kemp Lane Okafor Ruiz Sato Weber Nilsen Quist Farrow Ito Brandt Achebe".split()
DOMAINS = ["mail.test", "inbox.test", "post.test", "webmail.test"]

audiences = [{"audience_id": a, "name": n, "from_name": fn, "from_email": fe, "created_on": day(-r.randint(500, 900))}
             for a, n, fn, fe, _ in AUDIENCES]
subscribers, stags = [], []
for a, _, _, _, tags in AUDIENCES:
    names = set()
    for k in range(62):
        while True:
            name = f"{r.choice(FIRST)} {r.choice(LAST)}"
            if name not in names:
                names.add(name)
                break
        joined = day(-r.randint(20, 480))
        s = {"subscriber_id": len(subscribers) + 1, "audience_id": a,
             "email": f"{name.lower().replace(' ', '.')}@{r.choice(DOMAINS)}", "full_name": name,
             "status": "subscribed", "consent_source": r.choice(["signup_form"] * 4 + ["event", "import", "api"]),
             "joined_on": joined, "unsubscribed_on": None, "unsubscribe_reason": None}
        if r.random() < 0.12:
            j = dt.date.fromisoformat(joined)
            s["status"] = "unsubscribed"
            s["unsubscribed_on"] = (j + dt.timedelta(days=r.randint(1, max(1, (CLOCK - j).days - 1)))).isoformat()
            s["unsubscribe_reason"] = r.choice(["no_longer_interested", "too_frequent", "not_relevant", "never_signed_up", "other"])
        subscribers.append(s)
        for t in r.sample(tags, r.choice([0, 1, 1, 2, 2, 3])):
            stags.append({"subscriber_id": s["subscriber_id"], "tag": t})
tags_of = {}
for t in stags:
    tags_of.setdefault(t["subscriber_id"], set()).add(t["tag"])

SEGMENTS = [(1, "VIP members", "vip", None), (1, "New gardeners", "beginner", day(-180)), (1, "Volunteers", "volunteer", None),
            (2, "Beta testers", "beta-tester", None), (2, "PC players", "pc", None),
            (3, "Marathon squad", "marathon", None), (3, "Trail runners", "trail", None), (3, "New runners this year", "beginner", "2025-12-31"),
            (4, "Wholesale buyers", "wholesale", None), (4, "Workshop fans", "workshop", None), (4, "Local regulars", "local", None)]
segments = [{"segment_id": i + 1, "audience_id": a, "segment_name": n, "tag": t, "joined_after": j,
             "created_on": max(day(-r.randint(120, 400)), j or "")} for i, (a, n, t, j) in enumerate(SEGMENTS)]

SUBJECTS = {
    1: ["Spring planting guide", "Members' night at the greenhouse", "Seed swap this Saturday", "Pruning roses: a primer",
        "Allotment waiting list update", "Your April garden checklist", "Composting workshop recap"],
    2: ["New releases this week", "Devlog roundup", "Beta keys inside", "Festival demo picks", "Hidden gems under $10",
        "Interview: the cosy-game makers", "Patch notes worth reading"],
    3: ["Race calendar for spring", "Tuesday track session moves", "Trail weekend sign-ups", "Marathon training block 3",
        "Tips for your first 10K", "Club kit pre-orders", "Volunteer call for the 5K"],
    4: ["This week's bakes", "Sourdough workshop dates", "Hot cross buns are back", "Wholesale price list",
        "Gluten-free range expands", "Holiday opening hours", "Meet our new pastry chef"],
}
BODY = ("Hi {{first_name}},\n\n%s\n\nSee you soon,\n%s\n\nUnsubscribe: {{unsubscribe_link}}")
LINES = ["Here is what is new this week.", "We have a few updates we think you'll enjoy.", "Thanks for being part of the community.",
         "Dates, details and a little extra inside."]


def segment_of(audience_id, created_on):
    options = [s for s in segments if s["audience_id"] == audience_id and s["created_on"] <= created_on]
    return r.choice([None, None, None] + options)


campaigns = []
for a, _, from_name, _, _ in AUDIENCES:
    # sent campaigns: weekly-ish over the last months, at 09:00 or 17:30 UTC
    sent_days = sorted(r.sample(range(-150, -1), 7))
    plan = [("sent", d) for d in sent_days] + [("scheduled", d) for d in sorted(r.sample(range(2, 40), 2))] + [("draft", None)] * 2
    for status, d in plan:
        subject = r.choice(SUBJECTS[a])
        c = {"campaign_id": 0, "audience_id": a, "segment_id": None, "subject": subject,
             "preview_text": r.choice(["", "Open for the details", "A short read for your weekend"]),
             "body": BODY % (r.choice(LINES), from_name), "status": status, "created_on": None, "scheduled_for": None,
             "sent_at": None, "recipient_count": None}
        if status == "sent":
            c["created_on"] = day(d - r.randint(1, 6))
            c["sent_at"] = f"{day(d)}T{r.choice(['09:00', '17:30'])}:00Z"
        elif status == "scheduled":
            c["created_on"] = day(-r.randint(1, 10))
            c["scheduled_for"] = f"{day(d)}T{r.choice(['08:00', '09:00', '16:45'])}:00Z"
        else:
            c["created_on"] = day(-r.randint(0, 12))
            if r.random() < 0.5:  # an early draft still missing the unsubscribe merge tag
                c["body"] = c["body"].replace("\n\nUnsubscribe: {{unsubscribe_link}}", "")
        seg = segment_of(a, c["created_on"])
        c["segment_id"] = seg["segment_id"] if seg else None
        campaigns.append(c)
campaigns.sort(key=lambda c: (c["created_on"], c["audience_id"]))
for i, c in enumerate(campaigns):
    c["campaign_id"] = i + 1

# Deliver the sent campaigns in time order.
deliveries = []
cleaned_on = {}
for c in sorted((c for c in campaigns if c["status"] == "sent"), key=lambda c: c["sent_at"]):
    send_day = c["sent_at"][:10]

    def reachable(s, seg):
        if s["audience_id"] != c["audience_id"] or s["joined_on"] > send_day:
            return False
        if s["unsubscribed_on"] and s["unsubscribed_on"] <= send_day or s["subscriber_id"] in cleaned_on:
            return False
        return not seg or (seg["tag"] in tags_of.get(s["subscriber_id"], ())
                           and not (seg["joined_after"] and s["joined_on"] <= seg["joined_after"]))

    seg = segments[c["segment_id"] - 1] if c["segment_id"] else None
    recipients = [s for s in subscribers if reachable(s, seg)]
    if not recipients:  # nobody in the segment yet: the campaign went to the whole audience
        c["segment_id"], recipients = None, [s for s in subscribers if reachable(s, None)]
    count = 0
    for s in recipients:
        roll = r.random()
        if roll < 0.012:
            outcome, bounce = "bounced", "hard"
            cleaned_on[s["subscriber_id"]] = send_day
        elif roll < 0.04:
            outcome, bounce = "bounced", "soft"
        elif roll < 0.14:
            outcome, bounce = "clicked", None
        elif roll < 0.45:
            outcome, bounce = "opened", None
        else:
            outcome, bounce = "delivered", None
        deliveries.append({"delivery_id": len(deliveries) + 1, "campaign_id": c["campaign_id"], "subscriber_id": s["subscriber_id"],
                           "outcome": outcome, "bounce_type": bounce})
        count += 1
    c["recipient_count"] = count
for s in subscribers:
    if s["subscriber_id"] in cleaned_on:
        s.update(status="cleaned", unsubscribed_on=None, unsubscribe_reason=None)

print(json.dumps({"audiences": audiences, "subscribers": subscribers, "subscriber_tags": stags, "segments": segments,
                  "campaigns": campaigns, "deliveries": deliveries}, indent=1))
