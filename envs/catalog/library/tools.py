"""Library lending tools. Business rules live here: copies never go below zero, suspended
members cannot borrow, a member holds at most ``max_loans`` active loans, a loan renews at most
twice and never while someone else waits for the book, holds only queue for books with no copy."""
from datetime import date, timedelta

from envfactory.envs import ToolError

LOAN_DAYS = 21
RENEW_DAYS = 14
MAX_RENEWALS = 2


def _book_summary(row):
    return {k: row[k] for k in ("book_id", "title", "author", "genre", "published_year", "available_copies")}


def _active_member(ctx, member_id):
    member = ctx.get("members", member_id, "member")
    if member["status"] != "active":
        raise ToolError(f"member {member_id} is suspended and cannot borrow or place holds")
    return member


def search_books(ctx, query=None, author=None, genre=None, available_only=False, limit=10, offset=0):
    where, params = [], []
    if query:
        where.append("title LIKE ?")
        params.append(f"%{query}%")
    if author:
        where.append("author LIKE ?")
        params.append(f"%{author}%")
    if genre:
        where.append("genre = ?")
        params.append(genre)
    if available_only:
        where.append("available_copies > 0")
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    total = ctx.scalar(f"SELECT COUNT(*) FROM books{clause}", params)
    rows = ctx.all(f"SELECT * FROM books{clause} ORDER BY title, book_id LIMIT ? OFFSET ?", [*params, limit, offset])
    return {"total": total, "books": [_book_summary(r) for r in rows]}


def get_book(ctx, book_id):
    book = ctx.get("books", book_id, "book")
    waiting = ctx.scalar("SELECT COUNT(*) FROM holds WHERE book_id = ? AND status = 'waiting'", (book_id,))
    return {**book, "holds_waiting": waiting}


def find_member(ctx, email):
    member = ctx.one("SELECT * FROM members WHERE lower(email) = lower(?)", (email.strip(),))
    if member is None:
        raise ToolError(f"no member has the email {email!r}")
    return member


def list_member_loans(ctx, member_id, status=None):
    ctx.get("members", member_id, "member")
    sql = ("SELECT l.loan_id, l.book_id, b.title, l.checked_out_on, l.due_on, l.returned_on, l.renewals, l.status "
           "FROM loans l JOIN books b USING (book_id) WHERE l.member_id = ?")
    params = [member_id]
    if status:
        sql += " AND l.status = ?"
        params.append(status)
    return {"member_id": member_id, "loans": ctx.all(sql + " ORDER BY l.checked_out_on DESC, l.loan_id DESC", params)}


def checkout_book(ctx, member_id, book_id):
    member = _active_member(ctx, member_id)
    book = ctx.get("books", book_id, "book")
    if book["available_copies"] <= 0:
        raise ToolError(f"book {book_id} has no copy available; place a hold instead")
    active = ctx.scalar("SELECT COUNT(*) FROM loans WHERE member_id = ? AND status = 'active'", (member_id,))
    if active >= member["max_loans"]:
        raise ToolError(f"member {member_id} already has {active} active loans (limit {member['max_loans']})")
    if ctx.scalar("SELECT 1 FROM loans WHERE member_id = ? AND book_id = ? AND status = 'active'", (member_id, book_id)):
        raise ToolError(f"member {member_id} already has book {book_id} on loan")
    today = date.fromisoformat(ctx.today())
    loan_id = ctx.insert("loans", {"book_id": book_id, "member_id": member_id, "checked_out_on": today.isoformat(),
                                   "due_on": (today + timedelta(days=LOAN_DAYS)).isoformat(), "returned_on": None,
                                   "renewals": 0, "status": "active"})
    ctx.execute("UPDATE books SET available_copies = available_copies - 1 WHERE book_id = ?", (book_id,))
    # A member who borrows a book they were waiting for no longer waits.
    ctx.execute("UPDATE holds SET status = 'fulfilled' WHERE book_id = ? AND member_id = ? AND status = 'waiting'",
                (book_id, member_id))
    return ctx.get("loans", loan_id, "loan")


def return_book(ctx, loan_id):
    loan = ctx.get("loans", loan_id, "loan")
    if loan["status"] != "active":
        raise ToolError(f"loan {loan_id} was already returned on {loan['returned_on']}")
    ctx.update("loans", loan_id, {"status": "returned", "returned_on": ctx.today()})
    ctx.execute("UPDATE books SET available_copies = available_copies + 1 WHERE book_id = ?", (loan["book_id"],))
    overdue_days = max(0, (date.fromisoformat(ctx.today()) - date.fromisoformat(loan["due_on"])).days)
    return {**ctx.get("loans", loan_id, "loan"), "overdue_days": overdue_days}


def renew_loan(ctx, loan_id):
    loan = ctx.get("loans", loan_id, "loan")
    if loan["status"] != "active":
        raise ToolError(f"loan {loan_id} is not active")
    if loan["renewals"] >= MAX_RENEWALS:
        raise ToolError(f"loan {loan_id} was already renewed {MAX_RENEWALS} times")
    waiting = ctx.scalar("SELECT COUNT(*) FROM holds WHERE book_id = ? AND status = 'waiting' AND member_id != ?",
                         (loan["book_id"], loan["member_id"]))
    if waiting:
        raise ToolError(f"loan {loan_id} cannot be renewed: {waiting} other member(s) wait for this book")
    new_due = date.fromisoformat(loan["due_on"]) + timedelta(days=RENEW_DAYS)
    ctx.update("loans", loan_id, {"due_on": new_due.isoformat(), "renewals": loan["renewals"] + 1})
    return ctx.get("loans", loan_id, "loan")


def place_hold(ctx, member_id, book_id):
    _active_member(ctx, member_id)
    book = ctx.get("books", book_id, "book")
    if book["available_copies"] > 0:
        raise ToolError(f"book {book_id} has {book['available_copies']} copies available; check it out instead")
    if ctx.scalar("SELECT 1 FROM holds WHERE member_id = ? AND book_id = ? AND status = 'waiting'", (member_id, book_id)):
        raise ToolError(f"member {member_id} already waits for book {book_id}")
    hold_id = ctx.insert("holds", {"book_id": book_id, "member_id": member_id, "placed_on": ctx.today(),
                                   "status": "waiting"})
    position = ctx.scalar("SELECT COUNT(*) FROM holds WHERE book_id = ? AND status = 'waiting' AND hold_id <= ?",
                          (book_id, hold_id))
    return {**ctx.get("holds", hold_id, "hold"), "queue_position": position}


def cancel_hold(ctx, hold_id):
    hold = ctx.get("holds", hold_id, "hold")
    if hold["status"] != "waiting":
        raise ToolError(f"hold {hold_id} is {hold['status']} and cannot be cancelled")
    ctx.update("holds", hold_id, {"status": "cancelled"})
    return ctx.get("holds", hold_id, "hold")
