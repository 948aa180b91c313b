"""Invoicing tools. Rules enforced here: only drafts take new lines; an invoice is sent with at
least one line, which fixes its issue date (today) and due date (today + the client's terms);
payments go to sent invoices and never exceed the balance, and the last one marks it paid;
only unpaid invoices can be voided; credit notes never exceed what was billed minus earlier credits."""
from datetime import date, timedelta

from envfactory.envs import ToolError


def _money(x):
    return round(float(x), 2)


def _summary(ctx, invoice_id):
    inv = ctx.get("invoices", invoice_id, "invoice")
    total = _money(ctx.scalar("SELECT COALESCE(SUM(quantity * unit_price), 0) FROM invoice_lines WHERE invoice_id = ?", (invoice_id,)))
    paid = _money(ctx.scalar("SELECT COALESCE(SUM(amount), 0) FROM payments WHERE invoice_id = ?", (invoice_id,)))
    credited = _money(ctx.scalar("SELECT COALESCE(SUM(amount), 0) FROM credit_notes WHERE invoice_id = ?", (invoice_id,)))
    balance = _money(max(total - paid - credited, 0)) if inv["status"] in ("sent",) else 0.0
    overdue = inv["status"] == "sent" and inv["due_date"] < ctx.today()
    return {**inv, "total": total, "paid": paid, "credited": credited, "balance": balance, "overdue": overdue}


def find_client(ctx, email):
    row = ctx.one("SELECT * FROM clients WHERE lower(email) = lower(?)", (email.strip(),))
    if row is None:
        raise ToolError(f"no client has the billing email {email!r}")
    return row


def list_invoices(ctx, client_id=None, status=None, overdue_only=False, limit=20, offset=0):
    where, params = [], []
    if client_id is not None:
        ctx.get("clients", client_id, "client")
        where.append("client_id = ?")
        params.append(client_id)
    if status:
        where.append("status = ?")
        params.append(status)
    if overdue_only:
        where.append("status = 'sent' AND due_date < ?")
        params.append(ctx.today())
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    ids = [r["invoice_id"] for r in ctx.all(f"SELECT invoice_id FROM invoices{clause} ORDER BY invoice_id DESC LIMIT ? OFFSET ?",
                                            [*params, limit, offset])]
    total = ctx.scalar(f"SELECT COUNT(*) FROM invoices{clause}", params)
    return {"total": total, "invoices": [_summary(ctx, i) for i in ids]}


def get_invoice(ctx, invoice_id):
    out = _summary(ctx, invoice_id)
    out["lines"] = ctx.all("SELECT line_id, description, quantity, unit_price FROM invoice_lines WHERE invoice_id = ? ORDER BY line_id", (invoice_id,))
    return out


def create_invoice(ctx, client_id):
    ctx.get("clients", client_id, "client")
    next_id = ctx.scalar("SELECT COALESCE(MAX(invoice_id), 0) + 1 FROM invoices")
    invoice_id = ctx.insert("invoices", {"invoice_id": next_id, "client_id": client_id, "number": f"INV-2026-{next_id:04d}",
                                         "status": "draft", "issue_date": None, "due_date": None})
    return get_invoice(ctx, invoice_id)


def add_line(ctx, invoice_id, description, quantity, unit_price):
    inv = ctx.get("invoices", invoice_id, "invoice")
    if inv["status"] != "draft":
        raise ToolError(f"invoice {inv['number']} is {inv['status']}; only drafts can change")
    ctx.insert("invoice_lines", {"invoice_id": invoice_id, "description": description.strip(), "quantity": quantity, "unit_price": unit_price})
    return get_invoice(ctx, invoice_id)


def send_invoice(ctx, invoice_id):
    inv = ctx.get("invoices", invoice_id, "invoice")
    if inv["status"] != "draft":
        raise ToolError(f"invoice {inv['number']} was already {inv['status']}")
    if not ctx.scalar("SELECT COUNT(*) FROM invoice_lines WHERE invoice_id = ?", (invoice_id,)):
        raise ToolError(f"invoice {inv['number']} has no lines; add at least one before sending")
    terms = ctx.scalar("SELECT payment_terms_days FROM clients WHERE client_id = ?", (inv["client_id"],))
    today = date.fromisoformat(ctx.today())
    ctx.update("invoices", invoice_id, {"status": "sent", "issue_date": today.isoformat(),
                                        "due_date": (today + timedelta(days=terms)).isoformat()})
    return get_invoice(ctx, invoice_id)


def record_payment(ctx, invoice_id, amount, method):
    inv = _summary(ctx, invoice_id)
    if inv["status"] != "sent":
        raise ToolError(f"invoice {inv['number']} is {inv['status']}; payments go to sent invoices")
    if _money(amount) > inv["balance"]:
        raise ToolError(f"payment of {amount:.2f} exceeds the balance of {inv['balance']:.2f} on invoice {inv['number']}")
    ctx.insert("payments", {"invoice_id": invoice_id, "amount": _money(amount), "method": method, "paid_on": ctx.today()})
    if _money(inv["balance"] - amount) == 0:
        ctx.update("invoices", invoice_id, {"status": "paid"})
    return get_invoice(ctx, invoice_id)


def void_invoice(ctx, invoice_id):
    inv = _summary(ctx, invoice_id)
    if inv["status"] not in ("draft", "sent"):
        raise ToolError(f"invoice {inv['number']} is {inv['status']} and cannot be voided")
    if inv["paid"] > 0:
        raise ToolError(f"invoice {inv['number']} has {inv['paid']:.2f} paid; issue a credit note instead")
    ctx.update("invoices", invoice_id, {"status": "void"})
    return get_invoice(ctx, invoice_id)


def issue_credit_note(ctx, invoice_id, amount, reason):
    inv = _summary(ctx, invoice_id)
    if inv["status"] not in ("sent", "paid"):
        raise ToolError(f"invoice {inv['number']} is {inv['status']}; credit notes apply to sent or paid invoices")
    room = _money(inv["total"] - inv["credited"])
    if _money(amount) > room:
        raise ToolError(f"credit of {amount:.2f} exceeds the {room:.2f} still creditable on invoice {inv['number']}")
    note_id = ctx.insert("credit_notes", {"invoice_id": invoice_id, "amount": _money(amount), "reason": reason.strip(), "issued_on": ctx.today()})
    after = _summary(ctx, invoice_id)
    if after["status"] == "sent" and after["balance"] == 0:
        ctx.update("invoices", invoice_id, {"status": "paid"})
    return {**ctx.get("credit_notes", note_id, "credit note"), "invoice_balance": _summary(ctx, invoice_id)["balance"]}


def client_statement(ctx, client_id):
    client = ctx.get("clients", client_id, "client")
    open_ids = [r["invoice_id"] for r in ctx.all("SELECT invoice_id FROM invoices WHERE client_id = ? AND status = 'sent' ORDER BY due_date",
                                                 (client_id,))]
    items = [_summary(ctx, i) for i in open_ids]
    return {"client_id": client_id, "name": client["name"], "open_invoices": items,
            "outstanding": _money(sum(i["balance"] for i in items)), "overdue": _money(sum(i["balance"] for i in items if i["overdue"]))}
