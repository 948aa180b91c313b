"""Vacation-rental tools. Rules enforced here: check-out after check-in, 1 to 28 nights, arrival
after today, party size within the property's limit, no night booked twice, only confirmed stays
change or cancel, refunds follow the property's cancellation policy, one review per completed stay."""
from datetime import date

from envfactory.envs import ToolError

MAX_NIGHTS = 28
REFUND_RULES = {  # policy -> [(days before check-in at least, share refunded)], first match wins
    "flexible": [(1, 1.0), (0, 0.0)],
    "moderate": [(5, 1.0), (1, 0.5), (0, 0.0)],
    "strict": [(7, 0.5), (0, 0.0)],
}


def _dates(ctx, check_in, check_out):
    try:
        start, end = date.fromisoformat(check_in), date.fromisoformat(check_out)
    except ValueError:
        raise ToolError("dates must be YYYY-MM-DD") from None
    if end <= start:
        raise ToolError(f"check-out {check_out} must be after check-in {check_in}")
    nights = (end - start).days
    if nights > MAX_NIGHTS:
        raise ToolError(f"stays are limited to {MAX_NIGHTS} nights; {nights} requested")
    if start <= date.fromisoformat(ctx.today()):
        raise ToolError(f"check-in {check_in} must be after today ({ctx.today()})")
    return start.isoformat(), end.isoformat(), nights


def _overlap(ctx, property_id, check_in, check_out, exclude=None):
    return ctx.one("SELECT reservation_id, check_in, check_out FROM reservations WHERE property_id = ? AND status = 'confirmed' "
                   "AND check_in < ? AND check_out > ? AND reservation_id != ?", (property_id, check_out, check_in, exclude or -1))


def search_properties(ctx, city=None, check_in=None, check_out=None, guests=1, property_type=None, max_nightly_rate=None,
                      limit=10, offset=0):
    where, params = ["max_guests >= ?"], [guests]
    if city:
        where.append("city = ?")
        params.append(city)
    if property_type:
        where.append("property_type = ?")
        params.append(property_type)
    if max_nightly_rate is not None:
        where.append("nightly_rate <= ?")
        params.append(max_nightly_rate)
    if check_in and check_out:
        if check_out <= check_in:
            raise ToolError(f"check-out {check_out} must be after check-in {check_in}")
        where.append("property_id NOT IN (SELECT property_id FROM reservations WHERE status = 'confirmed' AND check_in < ? AND check_out > ?)")
        params += [check_out, check_in]
    elif check_in or check_out:
        raise ToolError("give both check_in and check_out to filter by availability")
    clause = " WHERE " + " AND ".join(where)
    total = ctx.scalar(f"SELECT COUNT(*) FROM properties{clause}", params)
    rows = ctx.all(f"SELECT * FROM properties{clause} ORDER BY nightly_rate, property_id LIMIT ? OFFSET ?", [*params, limit, offset])
    return {"total": total, "properties": rows}


def get_property(ctx, property_id):
    prop = ctx.get("properties", property_id, "property")
    stats = ctx.one("SELECT COUNT(*) AS reviews, ROUND(AVG(rating), 2) AS average_rating FROM reviews JOIN reservations USING (reservation_id) "
                    "WHERE property_id = ?", (property_id,))
    return {**prop, **stats}


def find_guest(ctx, email):
    guest = ctx.one("SELECT * FROM guests WHERE lower(email) = lower(?)", (email.strip(),))
    if guest is None:
        raise ToolError(f"no guest has the email {email!r}")
    return guest


def list_guest_reservations(ctx, guest_id, status=None):
    ctx.get("guests", guest_id, "guest")
    sql = ("SELECT r.reservation_id, r.property_id, p.name AS property_name, p.city, r.check_in, r.check_out, r.guests, r.total, r.status "
           "FROM reservations r JOIN properties p USING (property_id) WHERE r.guest_id = ?")
    params = [guest_id]
    if status:
        sql += " AND r.status = ?"
        params.append(status)
    return {"guest_id": guest_id, "reservations": ctx.all(sql + " ORDER BY r.check_in DESC", params)}


def get_reservation(ctx, reservation_id):
    res = ctx.get("reservations", reservation_id, "reservation")
    prop = ctx.get("properties", res["property_id"], "property")
    return {**res, "property_name": prop["name"], "cancellation_policy": prop["cancellation_policy"]}


def book_stay(ctx, guest_id, property_id, check_in, check_out, guests):
    ctx.get("guests", guest_id, "guest")
    prop = ctx.get("properties", property_id, "property")
    start, end, nights = _dates(ctx, check_in, check_out)
    if guests > prop["max_guests"]:
        raise ToolError(f"property {property_id} sleeps at most {prop['max_guests']} guests; {guests} requested")
    clash = _overlap(ctx, property_id, start, end)
    if clash:
        raise ToolError(f"property {property_id} is already booked from {clash['check_in']} to {clash['check_out']}")
    rid = ctx.insert("reservations", {"property_id": property_id, "guest_id": guest_id, "check_in": start, "check_out": end,
                                      "guests": guests, "total": round(nights * prop["nightly_rate"], 2), "status": "confirmed",
                                      "refund_amount": None})
    return get_reservation(ctx, rid)


def _confirmed(ctx, reservation_id):
    res = ctx.get("reservations", reservation_id, "reservation")
    if res["status"] != "confirmed":
        raise ToolError(f"reservation {reservation_id} is {res['status']}; only confirmed reservations can change")
    return res


def change_dates(ctx, reservation_id, check_in, check_out):
    res = _confirmed(ctx, reservation_id)
    prop = ctx.get("properties", res["property_id"], "property")
    start, end, nights = _dates(ctx, check_in, check_out)
    if (start, end) == (res["check_in"], res["check_out"]):
        raise ToolError(f"reservation {reservation_id} is already from {start} to {end}; nothing to change")
    clash = _overlap(ctx, res["property_id"], start, end, exclude=reservation_id)
    if clash:
        raise ToolError(f"property {res['property_id']} is already booked from {clash['check_in']} to {clash['check_out']}")
    ctx.update("reservations", reservation_id, {"check_in": start, "check_out": end, "total": round(nights * prop["nightly_rate"], 2)})
    return get_reservation(ctx, reservation_id)


def change_party_size(ctx, reservation_id, guests):
    res = _confirmed(ctx, reservation_id)
    prop = ctx.get("properties", res["property_id"], "property")
    if guests == res["guests"]:
        raise ToolError(f"reservation {reservation_id} is already for {guests} guests; nothing to change")
    if guests > prop["max_guests"]:
        raise ToolError(f"property {prop['property_id']} sleeps at most {prop['max_guests']} guests; {guests} requested")
    ctx.update("reservations", reservation_id, {"guests": guests})
    return get_reservation(ctx, reservation_id)


def cancel_reservation(ctx, reservation_id):
    res = _confirmed(ctx, reservation_id)
    policy = ctx.get("properties", res["property_id"], "property")["cancellation_policy"]
    days = (date.fromisoformat(res["check_in"]) - date.fromisoformat(ctx.today())).days
    share = next(s for min_days, s in REFUND_RULES[policy] if days >= min_days)
    ctx.update("reservations", reservation_id, {"status": "cancelled", "refund_amount": round(res["total"] * share, 2)})
    return {**get_reservation(ctx, reservation_id), "days_before_check_in": days}


def post_review(ctx, reservation_id, rating, comment):
    res = ctx.get("reservations", reservation_id, "reservation")
    if res["status"] != "completed":
        raise ToolError(f"reservation {reservation_id} is {res['status']}; only completed stays can be reviewed")
    if ctx.scalar("SELECT 1 FROM reviews WHERE reservation_id = ?", (reservation_id,)):
        raise ToolError(f"reservation {reservation_id} already has a review")
    review_id = ctx.insert("reviews", {"reservation_id": reservation_id, "rating": rating, "comment": comment.strip(),
                                       "posted_on": ctx.today()})
    return ctx.get("reviews", review_id, "review")
