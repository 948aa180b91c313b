"""Deterministic seed data for the finance environment: python seed_gen.py > seed.json"""
import datetime as dt
import json
import random

r = random.Random(53)
CLOCK = dt.date(2026, 10, 20)
companies = ["Atlas Joinery", "Brightline Studio", "Cobalt Logistics", "Dunmore Bakery", "Elm Street Dental", "Fjord Analytics",
             "Granite Legal", "Harbor Yoga", "Indigo Print Co", "Juniper Farms", "Kestrel Media", "Lumen Architects",
             "Marlow Coffee", "Northwind Cycles", "Orchid Florals", "Pinecone Toys", "Quarry Fitness", "Riverbend Clinic",
             "Saffron Kitchen", "Tidewater Marine", "Umber Gallery", "Vantage Realty", "Willow Books", "Yarrow Tea",
             "Zephyr Drones", "Alder Tutors", "Beacon Audio", "Cedar Plumbing", "Delta Tailors", "Ember Ceramics"]
clients = [{"client_id": i + 1, "name": n, "email": "billing@" + n.lower().replace(" ", "") + ".test",
            "payment_terms_days": r.choice([7, 14, 30, 30, 60])} for i, n in enumerate(companies)]
services = [("Website maintenance (hours)", 85), ("Logo design", 450), ("Consulting (hours)", 120), ("Hosting (month)", 29),
            ("Photography session", 300), ("Copywriting (page)", 60), ("SEO audit", 700), ("Training workshop", 950)]
invoices, lines, payments, credits = [], [], [], []
for i in range(80):
    c = r.choice(clients)
    status = r.choice(["draft", "sent", "sent", "paid", "paid", "paid", "void"])
    issue = CLOCK - dt.timedelta(days=r.randint(1, 120))
    inv = {"invoice_id": i + 1, "client_id": c["client_id"], "number": f"INV-2026-{i + 1:04d}", "status": status,
           "issue_date": None if status == "draft" else issue.isoformat(),
           "due_date": None if status == "draft" else (issue + dt.timedelta(days=c["payment_terms_days"])).isoformat()}
    invoices.append(inv)
    total = 0
    for _ in range(r.randint(1, 3)):
        desc, price = r.choice(services)
        qty = r.choice([1, 1, 2, 3, 5, 10])
        lines.append({"line_id": len(lines) + 1, "invoice_id": inv["invoice_id"], "description": desc, "quantity": qty, "unit_price": price})
        total += qty * price
    if status == "paid":
        payments.append({"payment_id": len(payments) + 1, "invoice_id": inv["invoice_id"], "amount": total,
                         "method": r.choice(["bank_transfer", "card"]), "paid_on": (issue + dt.timedelta(days=r.randint(1, 20))).isoformat()})
    elif status == "sent" and r.random() < 0.3:
        payments.append({"payment_id": len(payments) + 1, "invoice_id": inv["invoice_id"], "amount": round(total / 2, 2),
                         "method": "bank_transfer", "paid_on": (issue + dt.timedelta(days=3)).isoformat()})
    if status in ("sent", "paid") and r.random() < 0.1:
        credits.append({"credit_note_id": len(credits) + 1, "invoice_id": inv["invoice_id"], "amount": round(total * 0.1, 2),
                        "reason": "goodwill discount", "issued_on": inv["issue_date"]})
print(json.dumps({"clients": clients, "invoices": invoices, "invoice_lines": lines, "payments": payments, "credit_notes": credits}, indent=1))
