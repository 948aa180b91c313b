"""Newsletter tools. Rules enforced here: an email appears once per audience; unsubscribed or
bounced people are never mailed and only rejoin through add_subscriber with fresh consent;
campaigns are edited only as drafts, scheduled at least an hour and at most 30 days ahead, and
need at least one subscribed recipient (in their segment); a sent campaign is final."""
from datetime import datetime, timedelta

from envfactory.envs import ToolError

MIN_LEAD = timedelta(hours=1)
MAX_LEAD = timedelta(days=30)


def _now(ctx):
    return datetime.fromisoformat(ctx.now().replace("Z", "+00:00"))


def _subscriber(ctx, subscriber_id):
    s = ctx.get("subscribers", subscriber_id, "subscriber")
    tags = [r["tag"] for r in ctx.all("SELECT tag FROM subscriber_tags WHERE subscriber_id = ? ORDER BY tag", (subscriber_id,))]
    return {**s, "tags": tags}


def _recipients(ctx, campaign):
    sql = "SELECT s.subscriber_id FROM subscribers s WHERE s.audience_id = ? AND s.status = 'subscribed'"
    params = [campaign["audience_id"]]
    if campaign["segment_tag"]:
        sql += " AND EXISTS (SELECT 1 FROM subscriber_tags t WHERE t.subscriber_id = s.subscriber_id AND t.tag = ?)"
        params.append(campaign["segment_tag"])
    return [r["subscriber_id"] for r in ctx.all(sql + " ORDER BY s.subscriber_id", params)]


def _campaign(ctx, campaign_id):
    c = ctx.get("campaigns", campaign_id, "campaign")
    return {**c, "recipients": len(_recipients(ctx, c)) if c["status"] in ("draft", "scheduled") else
            ctx.scalar("SELECT COUNT(*) FROM deliveries WHERE campaign_id = ?", (campaign_id,))}


def list_audiences(ctx):
    return {"audiences": ctx.all("SELECT a.audience_id, a.name, a.from_address, "
                                 "(SELECT COUNT(*) FROM subscribers s WHERE s.audience_id = a.audience_id AND s.status = 'subscribed') AS subscribed "
                                 "FROM audiences a ORDER BY a.name")}


def find_subscriber(ctx, audience_id, email):
    ctx.get("audiences", audience_id, "audience")
    row = ctx.one("SELECT subscriber_id FROM subscribers WHERE audience_id = ? AND lower(email) = lower(?)", (audience_id, email.strip()))
    if row is None:
        raise ToolError(f"{email!r} is not on audience {audience_id}")
    return _subscriber(ctx, row["subscriber_id"])


def search_subscribers(ctx, audience_id, status=None, tag=None, limit=20, offset=0):
    ctx.get("audiences", audience_id, "audience")
    where, params = ["s.audience_id = ?"], [audience_id]
    if status:
        where.append("s.status = ?")
        params.append(status)
    if tag:
        where.append("EXISTS (SELECT 1 FROM subscriber_tags t WHERE t.subscriber_id = s.subscriber_id AND t.tag = ?)")
        params.append(tag)
    clause = " WHERE " + " AND ".join(where)
    total = ctx.scalar(f"SELECT COUNT(*) FROM subscribers s{clause}", params)
    rows = ctx.all(f"SELECT s.subscriber_id FROM subscribers s{clause} ORDER BY s.subscriber_id LIMIT ? OFFSET ?", [*params, limit, offset])
    return {"total": total, "subscribers": [_subscriber(ctx, r["subscriber_id"]) for r in rows]}


def add_subscriber(ctx, audience_id, email, name, consent_source):
    ctx.get("audiences", audience_id, "audience")
    existing = ctx.one("SELECT * FROM subscribers WHERE audience_id = ? AND lower(email) = lower(?)", (audience_id, email.strip()))
    if existing and existing["status"] == "subscribed":
        raise ToolError(f"{email!r} is already subscribed to audience {audience_id}")
    if existing:  # rejoining with fresh consent
        ctx.update("subscribers", existing["subscriber_id"], {"status": "subscribed", "consent_source": consent_source, "joined_on": ctx.today()})
        return _subscriber(ctx, existing["subscriber_id"])
    sid = ctx.insert("subscribers", {"audience_id": audience_id, "email": email.strip().lower(), "name": name.strip(), "status": "subscribed",
                                     "consent_source": consent_source, "joined_on": ctx.today()})
    return _subscriber(ctx, sid)


def unsubscribe(ctx, subscriber_id):
    s = ctx.get("subscribers", subscriber_id, "subscriber")
    if s["status"] != "subscribed":
        raise ToolError(f"subscriber {subscriber_id} is already {s['status']}")
    ctx.update("subscribers", subscriber_id, {"status": "unsubscribed"})
    return _subscriber(ctx, subscriber_id)


def tag_subscriber(ctx, subscriber_id, tag):
    ctx.get("subscribers", subscriber_id, "subscriber")
    tag = tag.strip().lower()
    if ctx.scalar("SELECT 1 FROM subscriber_tags WHERE subscriber_id = ? AND tag = ?", (subscriber_id, tag)):
        raise ToolError(f"subscriber {subscriber_id} already has the tag {tag!r}")
    ctx.execute("INSERT INTO subscriber_tags (subscriber_id, tag) VALUES (?, ?)", (subscriber_id, tag))
    return _subscriber(ctx, subscriber_id)


def create_campaign(ctx, audience_id, subject, body, segment_tag=None):
    ctx.get("audiences", audience_id, "audience")
    cid = ctx.insert("campaigns", {"audience_id": audience_id, "subject": subject.strip(), "body": body, "segment_tag": segment_tag,
                                   "status": "draft", "scheduled_for": None, "sent_on": None})
    return _campaign(ctx, cid)


def _ready(ctx, campaign_id, allowed):
    c = ctx.get("campaigns", campaign_id, "campaign")
    if c["status"] not in allowed:
        raise ToolError(f"campaign {campaign_id} is {c['status']}")
    if not _recipients(ctx, c):
        segment = f" with tag {c['segment_tag']!r}" if c["segment_tag"] else ""
        raise ToolError(f"campaign {campaign_id} has no subscribed recipients{segment}")
    return c


def schedule_campaign(ctx, campaign_id, send_at):
    _ready(ctx, campaign_id, ("draft",))
    try:
        when = datetime.fromisoformat(send_at.replace("Z", "+00:00"))
    except ValueError:
        raise ToolError(f"send time {send_at!r} is not an ISO date-time") from None
    if when.tzinfo is None:
        raise ToolError("give the send time with a time zone, e.g. 2026-04-12T09:00:00Z")
    if not _now(ctx) + MIN_LEAD <= when <= _now(ctx) + MAX_LEAD:
        raise ToolError(f"send time must be between 1 hour and 30 days from now ({ctx.now()})")
    ctx.update("campaigns", campaign_id, {"status": "scheduled", "scheduled_for": when.strftime("%Y-%m-%dT%H:%M:%SZ")})
    return _campaign(ctx, campaign_id)


def cancel_campaign(ctx, campaign_id):
    c = ctx.get("campaigns", campaign_id, "campaign")
    if c["status"] != "scheduled":
        raise ToolError(f"campaign {campaign_id} is {c['status']}; only scheduled campaigns can be cancelled")
    ctx.update("campaigns", campaign_id, {"status": "cancelled"})
    return _campaign(ctx, campaign_id)


def send_campaign_now(ctx, campaign_id):
    c = _ready(ctx, campaign_id, ("draft", "scheduled"))
    recipients = _recipients(ctx, c)
    for sid in recipients:
        ctx.execute("INSERT INTO deliveries (campaign_id, subscriber_id, outcome) VALUES (?, ?, 'delivered')", (campaign_id, sid))
    ctx.update("campaigns", campaign_id, {"status": "sent", "sent_on": ctx.today(), "scheduled_for": None})
    return _campaign(ctx, campaign_id)


def campaign_report(ctx, campaign_id):
    c = ctx.get("campaigns", campaign_id, "campaign")
    if c["status"] != "sent":
        raise ToolError(f"campaign {campaign_id} is {c['status']}; reports exist for sent campaigns")
    counts = {r["outcome"]: r["n"] for r in ctx.all("SELECT outcome, COUNT(*) AS n FROM deliveries WHERE campaign_id = ? GROUP BY outcome", (campaign_id,))}
    total = sum(counts.values())
    return {"campaign_id": campaign_id, "subject": c["subject"], "sent_on": c["sent_on"], "recipients": total,
            "opened": counts.get("opened", 0), "bounced": counts.get("bounced", 0),
            "open_rate": round(counts.get("opened", 0) / total, 3) if total else 0.0}
