"""Email newsletter tools.

Rules enforced here (several are also backed by CHECK constraints in schema.sql):
- an address appears once per audience; a cleaned address (hard bounce) is never re-added; someone
  who unsubscribed only comes back by opting in again themselves (a signup form or an event), never
  through an import or the API; unsubscribed and cleaned people are never mailed.
- a segment selects the subscribed members of one audience with a tag (and optionally a join date).
- campaigns are edited only as drafts; a campaign is scheduled or sent only when its body has the
  {{unsubscribe_link}} merge tag and it has at least one recipient; send times fall on a quarter
  hour, 15 minutes to 60 days ahead, and sends to one audience are at least an hour apart.
- a sent campaign is final; reports exist for sent campaigns only.
"""
import re
from datetime import datetime, timedelta, timezone

from envfactory.envs import ToolError

UNSUBSCRIBE_TAG = "{{unsubscribe_link}}"
MIN_LEAD = timedelta(minutes=15)
MAX_LEAD = timedelta(days=60)
SPACING = timedelta(hours=1)
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")
SELF_CONSENT = ("signup_form", "event")


# ---------------------------------------------------------------- helpers

def _now(ctx):
    return datetime.fromisoformat(ctx.now().replace("Z", "+00:00"))


def _iso(moment):
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _audience(ctx, audience_id):
    return ctx.get("audiences", audience_id, "audience")


def _subscriber(ctx, subscriber_id):
    s = ctx.get("subscribers", subscriber_id, "subscriber")
    tags = [r["tag"] for r in ctx.all("SELECT tag FROM subscriber_tags WHERE subscriber_id = ? ORDER BY tag", (subscriber_id,))]
    return {**s, "tags": tags}


def _segment_filter(segment):
    sql = " AND EXISTS (SELECT 1 FROM subscriber_tags t WHERE t.subscriber_id = s.subscriber_id AND t.tag = ?)"
    params = [segment["tag"]]
    if segment["joined_after"]:
        sql += " AND s.joined_on > ?"
        params.append(segment["joined_after"])
    return sql, params


def _segment(ctx, segment_id, audience_id=None):
    seg = ctx.get("segments", segment_id, "segment")
    if audience_id is not None and seg["audience_id"] != audience_id:
        raise ToolError(f"segment {segment_id} belongs to audience {seg['audience_id']}, not audience {audience_id}")
    sql, params = _segment_filter(seg)
    count = ctx.scalar("SELECT COUNT(*) FROM subscribers s WHERE s.audience_id = ? AND s.status = 'subscribed'" + sql,
                       [seg["audience_id"], *params])
    return {**seg, "member_count": count}


def _recipients(ctx, campaign):
    sql = "SELECT s.subscriber_id FROM subscribers s WHERE s.audience_id = ? AND s.status = 'subscribed'"
    params = [campaign["audience_id"]]
    if campaign["segment_id"] is not None:
        extra, extra_params = _segment_filter(ctx.get("segments", campaign["segment_id"], "segment"))
        sql += extra
        params += extra_params
    return [r["subscriber_id"] for r in ctx.all(sql + " ORDER BY s.subscriber_id", params)]


def _campaign(ctx, campaign_id):
    c = ctx.get("campaigns", campaign_id, "campaign")
    segment_name = ctx.scalar("SELECT segment_name FROM segments WHERE segment_id = ?", (c["segment_id"],)) if c["segment_id"] else None
    recipients = c["recipient_count"] if c["status"] == "sent" else len(_recipients(ctx, c))
    return {**c, "segment_name": segment_name, "recipients": recipients,
            "has_unsubscribe_link": UNSUBSCRIBE_TAG in c["body"]}


def _ready_to_go(ctx, campaign):
    cid = campaign["campaign_id"]
    if UNSUBSCRIBE_TAG not in campaign["body"]:
        raise ToolError(f"campaign {cid}'s body has no {UNSUBSCRIBE_TAG} merge tag; every campaign must let recipients unsubscribe")
    recipients = _recipients(ctx, campaign)
    if not recipients:
        where = f"segment {campaign['segment_id']}" if campaign["segment_id"] else f"audience {campaign['audience_id']}"
        raise ToolError(f"campaign {cid} has no recipients: {where} has no subscribed members")
    return recipients


def _draft(ctx, campaign_id, action):
    c = ctx.get("campaigns", campaign_id, "campaign")
    if c["status"] == "scheduled":
        raise ToolError(f"campaign {campaign_id} is scheduled for {c['scheduled_for']}; unschedule it before you {action} it")
    if c["status"] == "sent":
        raise ToolError(f"campaign {campaign_id} was sent at {c['sent_at']} and can no longer be changed")
    return c


# ---------------------------------------------------------------- reads

def list_audiences(ctx):
    audiences = ctx.all(
        "SELECT a.audience_id, a.name, a.from_name, a.from_email, "
        "(SELECT COUNT(*) FROM subscribers s WHERE s.audience_id = a.audience_id AND s.status = 'subscribed') AS subscribed, "
        "(SELECT COUNT(*) FROM subscribers s WHERE s.audience_id = a.audience_id AND s.status = 'unsubscribed') AS unsubscribed, "
        "(SELECT COUNT(*) FROM subscribers s WHERE s.audience_id = a.audience_id AND s.status = 'cleaned') AS cleaned "
        "FROM audiences a ORDER BY a.name")
    for a in audiences:
        a["segments"] = [{k: seg[k] for k in ("segment_id", "segment_name", "tag", "joined_after", "member_count")}
                         for seg in (_segment(ctx, r["segment_id"]) for r in
                                     ctx.all("SELECT segment_id FROM segments WHERE audience_id = ? ORDER BY segment_id", (a["audience_id"],)))]
    return {"total": len(audiences), "audiences": audiences}


def search_subscribers(ctx, audience_id, email=None, query=None, status=None, tag=None, segment_id=None, limit=20, offset=0):
    _audience(ctx, audience_id)
    where, params = "s.audience_id = ?", [audience_id]
    if email:
        where += " AND s.email = ?"
        params.append(email.strip().lower())
    if query:
        where += " AND (s.full_name LIKE ? OR s.email LIKE ?)"
        params += [f"%{query.strip()}%"] * 2
    if status:
        where += " AND s.status = ?"
        params.append(status)
    if tag:
        where += " AND EXISTS (SELECT 1 FROM subscriber_tags t WHERE t.subscriber_id = s.subscriber_id AND t.tag = ?)"
        params.append(tag.strip().lower())
    if segment_id is not None:
        seg = _segment(ctx, segment_id, audience_id)
        extra, extra_params = _segment_filter(seg)
        where += " AND s.status = 'subscribed'" + extra
        params += extra_params
    total = ctx.scalar(f"SELECT COUNT(*) FROM subscribers s WHERE {where}", params)
    rows = ctx.all(f"SELECT s.subscriber_id FROM subscribers s WHERE {where} ORDER BY s.subscriber_id LIMIT ? OFFSET ?",
                   [*params, limit, offset])
    return {"total": total, "subscribers": [_subscriber(ctx, r["subscriber_id"]) for r in rows]}


def list_campaigns(ctx, audience_id=None, status=None, query=None, limit=20, offset=0):
    where, params = [], []
    if audience_id is not None:
        _audience(ctx, audience_id)
        where.append("audience_id = ?")
        params.append(audience_id)
    if status:
        where.append("status = ?")
        params.append(status)
    if query:
        where.append("subject LIKE ?")
        params.append(f"%{query.strip()}%")
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    total = ctx.scalar(f"SELECT COUNT(*) FROM campaigns{clause}", params)
    ids = ctx.all(f"SELECT campaign_id FROM campaigns{clause} "
                  "ORDER BY COALESCE(sent_at, scheduled_for, created_on) DESC, campaign_id DESC LIMIT ? OFFSET ?", [*params, limit, offset])
    campaigns = []
    for r in ids:
        c = _campaign(ctx, r["campaign_id"])
        del c["body"]
        campaigns.append(c)
    return {"total": total, "campaigns": campaigns}


def campaign_report(ctx, campaign_id):
    c = ctx.get("campaigns", campaign_id, "campaign")
    if c["status"] != "sent":
        raise ToolError(f"campaign {campaign_id} is {c['status']}; reports exist only for sent campaigns")
    counts = {r["k"]: r["n"] for r in ctx.all(
        "SELECT CASE WHEN outcome = 'bounced' THEN 'bounced_' || bounce_type ELSE outcome END AS k, COUNT(*) AS n "
        "FROM deliveries WHERE campaign_id = ? GROUP BY k", (campaign_id,))}
    sent = sum(counts.values())
    bounced = counts.get("bounced_hard", 0) + counts.get("bounced_soft", 0)
    delivered = sent - bounced
    clicked = counts.get("clicked", 0)
    opened = counts.get("opened", 0) + clicked
    unsubscribed = ctx.scalar("SELECT COUNT(*) FROM deliveries d JOIN subscribers s USING (subscriber_id) "
                              "WHERE d.campaign_id = ? AND s.status = 'unsubscribed' AND s.unsubscribed_on >= ?",
                              (campaign_id, c["sent_at"][:10]))
    return {"campaign_id": campaign_id, "subject": c["subject"], "sent_at": c["sent_at"], "recipients": sent,
            "delivered": delivered, "opened": opened, "clicked": clicked, "hard_bounces": counts.get("bounced_hard", 0),
            "soft_bounces": counts.get("bounced_soft", 0), "unsubscribed_since": unsubscribed,
            "open_rate": round(opened / delivered, 3) if delivered else 0.0,
            "click_rate": round(clicked / delivered, 3) if delivered else 0.0}


# ---------------------------------------------------------------- writes

def add_subscriber(ctx, audience_id, email, full_name, consent_source, tags=()):
    _audience(ctx, audience_id)
    email = email.strip().lower()
    if not EMAIL.match(email):
        raise ToolError(f"{email!r} is not a valid email address")
    tags = sorted({t.strip().lower() for t in tags})
    existing = ctx.one("SELECT * FROM subscribers WHERE audience_id = ? AND email = ?", (audience_id, email))
    if existing:
        sid = existing["subscriber_id"]
        if existing["status"] == "subscribed":
            raise ToolError(f"{email} is already subscribed to audience {audience_id} (subscriber {sid})")
        if existing["status"] == "cleaned":
            raise ToolError(f"{email} was cleaned from audience {audience_id} after a hard bounce (subscriber {sid}) and cannot be re-added")
        if consent_source not in SELF_CONSENT:
            raise ToolError(f"{email} unsubscribed from audience {audience_id} on {existing['unsubscribed_on']} (subscriber {sid}); "
                            "only the person can opt in again, through a signup_form or an event, not by import or api")
        ctx.update("subscribers", sid, {"status": "subscribed", "consent_source": consent_source, "joined_on": ctx.today(),
                                        "unsubscribed_on": None, "unsubscribe_reason": None})
    else:
        sid = ctx.insert("subscribers", {"audience_id": audience_id, "email": email, "full_name": full_name.strip(),
                                         "status": "subscribed", "consent_source": consent_source, "joined_on": ctx.today(),
                                         "unsubscribed_on": None, "unsubscribe_reason": None})
    for tag in tags:
        ctx.execute("INSERT OR IGNORE INTO subscriber_tags (subscriber_id, tag) VALUES (?, ?)", (sid, tag))
    return _subscriber(ctx, sid)


def unsubscribe_subscriber(ctx, subscriber_id, reason="no_longer_interested"):
    s = ctx.get("subscribers", subscriber_id, "subscriber")
    if s["status"] == "unsubscribed":
        raise ToolError(f"subscriber {subscriber_id} ({s['email']}) already unsubscribed on {s['unsubscribed_on']}")
    if s["status"] == "cleaned":
        raise ToolError(f"subscriber {subscriber_id} ({s['email']}) was cleaned after a hard bounce and receives no mail")
    ctx.update("subscribers", subscriber_id, {"status": "unsubscribed", "unsubscribed_on": ctx.today(), "unsubscribe_reason": reason})
    return _subscriber(ctx, subscriber_id)


def tag_subscriber(ctx, subscriber_id, tag, remove=False):
    s = ctx.get("subscribers", subscriber_id, "subscriber")
    tag = tag.strip().lower()
    has = ctx.scalar("SELECT 1 FROM subscriber_tags WHERE subscriber_id = ? AND tag = ?", (subscriber_id, tag))
    if remove:
        if not has:
            raise ToolError(f"subscriber {subscriber_id} ({s['email']}) has no tag {tag!r}")
        ctx.execute("DELETE FROM subscriber_tags WHERE subscriber_id = ? AND tag = ?", (subscriber_id, tag))
    else:
        if has:
            raise ToolError(f"subscriber {subscriber_id} ({s['email']}) already has the tag {tag!r}")
        ctx.execute("INSERT INTO subscriber_tags (subscriber_id, tag) VALUES (?, ?)", (subscriber_id, tag))
    return _subscriber(ctx, subscriber_id)


def create_segment(ctx, audience_id, segment_name, tag, joined_after=None):
    _audience(ctx, audience_id)
    segment_name = segment_name.strip()
    clash = ctx.scalar("SELECT segment_id FROM segments WHERE audience_id = ? AND lower(segment_name) = lower(?)", (audience_id, segment_name))
    if clash:
        raise ToolError(f"audience {audience_id} already has a segment named {segment_name!r} (segment {clash})")
    if joined_after is not None and joined_after >= ctx.today():
        raise ToolError(f"joined_after {joined_after} must be a day before today ({ctx.today()})")
    segment_id = ctx.insert("segments", {"audience_id": audience_id, "segment_name": segment_name, "tag": tag.strip().lower(),
                                         "joined_after": joined_after, "created_on": ctx.today()})
    return _segment(ctx, segment_id)


def create_campaign(ctx, audience_id, subject, body, preview_text="", segment_id=None):
    _audience(ctx, audience_id)
    if segment_id is not None:
        _segment(ctx, segment_id, audience_id)
    campaign_id = ctx.insert("campaigns", {"audience_id": audience_id, "segment_id": segment_id, "subject": subject.strip(),
                                           "preview_text": preview_text.strip(), "body": body, "status": "draft",
                                           "created_on": ctx.today(), "scheduled_for": None, "sent_at": None,
                                           "recipient_count": None})
    return _campaign(ctx, campaign_id)


def update_campaign(ctx, campaign_id, subject=None, preview_text=None, body=None, segment_id=None):
    c = _draft(ctx, campaign_id, "edit")
    changes = {}
    if subject is not None:
        changes["subject"] = subject.strip()
    if preview_text is not None:
        changes["preview_text"] = preview_text.strip()
    if body is not None:
        changes["body"] = body
    if segment_id is not None:
        _segment(ctx, segment_id, c["audience_id"])
        changes["segment_id"] = segment_id
    if not changes:
        raise ToolError("give at least one field to change: subject, preview_text, body or segment_id")
    if all(c[k] == v for k, v in changes.items()):
        raise ToolError(f"campaign {campaign_id} already has {', '.join(f'{k} {v!r}' for k, v in changes.items())}; "
                        "nothing to change")
    ctx.update("campaigns", campaign_id, changes)
    return _campaign(ctx, campaign_id)


def schedule_campaign(ctx, campaign_id, send_at):
    c = _draft(ctx, campaign_id, "schedule")
    try:
        when = datetime.fromisoformat(send_at.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ToolError(f"send time {send_at!r} is not an ISO 8601 date-time such as 2026-04-12T09:00:00Z") from None
    if when.tzinfo is None:
        raise ToolError(f"send time {send_at!r} has no time zone; give it in UTC, e.g. 2026-04-12T09:00:00Z")
    if when.minute % 15 or when.second or when.microsecond:
        raise ToolError(f"send time {_iso(when)} is not on a quarter hour (:00, :15, :30 or :45)")
    now = _now(ctx)
    if when < now + MIN_LEAD:
        raise ToolError(f"send time {_iso(when)} must be at least 15 minutes from now ({ctx.now()})")
    if when > now + MAX_LEAD:
        raise ToolError(f"send time {_iso(when)} is more than 60 days ahead (latest {_iso(now + MAX_LEAD)})")
    _ready_to_go(ctx, c)
    for other in ctx.all("SELECT campaign_id, scheduled_for FROM campaigns WHERE audience_id = ? AND status = 'scheduled' "
                         "ORDER BY scheduled_for", (c["audience_id"],)):
        other_when = datetime.fromisoformat(other["scheduled_for"].replace("Z", "+00:00"))
        if abs(other_when - when) < SPACING:
            raise ToolError(f"audience {c['audience_id']} already has campaign {other['campaign_id']} scheduled at {other['scheduled_for']}; "
                            "keep sends to one audience at least an hour apart")
    ctx.update("campaigns", campaign_id, {"status": "scheduled", "scheduled_for": _iso(when)})
    return _campaign(ctx, campaign_id)


def unschedule_campaign(ctx, campaign_id):
    c = ctx.get("campaigns", campaign_id, "campaign")
    if c["status"] != "scheduled":
        raise ToolError(f"campaign {campaign_id} is {c['status']}; only scheduled campaigns can be unscheduled")
    ctx.update("campaigns", campaign_id, {"status": "draft", "scheduled_for": None})
    return _campaign(ctx, campaign_id)


def send_campaign(ctx, campaign_id):
    c = ctx.get("campaigns", campaign_id, "campaign")
    if c["status"] == "sent":
        raise ToolError(f"campaign {campaign_id} was already sent at {c['sent_at']}")
    recipients = _ready_to_go(ctx, c)
    for sid in recipients:
        ctx.execute("INSERT INTO deliveries (campaign_id, subscriber_id, outcome, bounce_type) VALUES (?, ?, 'delivered', NULL)",
                    (campaign_id, sid))
    ctx.update("campaigns", campaign_id, {"status": "sent", "sent_at": ctx.now(), "scheduled_for": None,
                                          "recipient_count": len(recipients)})
    return _campaign(ctx, campaign_id)
