"""Deterministic seed data for the communication environment: python seed_gen.py > seed.json"""
import datetime as dt
import json
import random

r = random.Random(67)
CLOCK = dt.date(2026, 4, 10)
audiences = [{"audience_id": 1, "name": "Garden Club Weekly", "from_address": "news@gardenclub.test"},
             {"audience_id": 2, "name": "Indie Games Digest", "from_address": "digest@indiegames.test"},
             {"audience_id": 3, "name": "City Runners", "from_address": "hello@cityrunners.test"}]
first = "ana bo cy dee eli fay gil hal ivy jo kai lux max ned ola pip quin rei sol tal uli val wes xia yuki zed".split()
last = "park moss hale reed lowe frost gray hart kemp lane".split()
tags = ["vip", "beginner", "local", "beta-tester", "early-bird"]
subscribers, stags = [], []
for a in audiences:
    for k in range(32):
        name = f"{r.choice(first).title()} {r.choice(last).title()}"
        email = f"{name.lower().replace(' ', '.')}{k}@mail.test"
        s = {"subscriber_id": len(subscribers) + 1, "audience_id": a["audience_id"], "email": email, "name": name,
             "status": r.choice(["subscribed"] * 6 + ["unsubscribed", "bounced"]), "consent_source": r.choice(["signup form", "event", "import"]),
             "joined_on": (CLOCK - dt.timedelta(days=r.randint(10, 700))).isoformat()}
        subscribers.append(s)
        for t in r.sample(tags, r.randint(0, 2)):
            stags.append({"subscriber_id": s["subscriber_id"], "tag": t})
subjects = ["Spring planting guide", "Members' night", "New releases", "Race calendar", "Tips for beginners", "Our annual survey", "Gear swap"]
campaigns, deliveries = [], []
for i in range(24):
    a = r.choice(audiences)
    status = r.choice(["draft", "scheduled", "sent", "sent", "sent", "cancelled"])
    sched = None
    sent = None
    if status == "scheduled":
        sched = f"{(CLOCK + dt.timedelta(days=r.randint(1, 20))).isoformat()}T09:00:00Z"
    if status == "sent":
        sent = (CLOCK - dt.timedelta(days=r.randint(1, 60))).isoformat()
    c = {"campaign_id": i + 1, "audience_id": a["audience_id"], "subject": r.choice(subjects), "body": "Hello {{name}}, ...",
         "segment_tag": r.choice([None, None, "vip", "local"]), "status": status, "scheduled_for": sched, "sent_on": sent}
    campaigns.append(c)
    if status == "sent":
        for s in subscribers:
            if s["audience_id"] == a["audience_id"] and s["status"] == "subscribed" and r.random() < 0.8:
                deliveries.append({"delivery_id": len(deliveries) + 1, "campaign_id": c["campaign_id"], "subscriber_id": s["subscriber_id"],
                                   "outcome": r.choice(["delivered", "opened", "opened", "bounced"])})
print(json.dumps({"audiences": audiences, "subscribers": subscribers, "subscriber_tags": stags, "campaigns": campaigns,
                  "deliveries": deliveries}, indent=1))
