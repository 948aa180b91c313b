"""Deterministic seed data for the travel environment: python seed_gen.py > seed.json"""
import datetime as dt
import json
import random

r = random.Random(23)
CLOCK = dt.date(2026, 7, 1)
first = "Aiko Bram Carla Dev Eamon Fleur Gio Hale Isla Jun Kasia Luca Maeve Nico Oona Pia Rafe Sana Theo Ulla Vera Wim Xena Yusuf Zara Abel Bea Cyrus Dora Elio Fay Gus Hedda Ike Juno Kit Lior Mads Nell Otto".split()
last = "Mori Dekker Souza Patel Byrne Janssen Greco Yilmaz Fraser Tan Nowak Ferri Quinn Laine Virtanen Mayer Holt Iqbal Rhodes Berg Stein Visser Pappas Demir Kaur Lund Amaral Farahani Kral Ricci Hardy Olsen Aalto Okoro Chen Walsh Peretz Koch Doyle Lang".split()
countries = ["PT", "DE", "FR", "JP", "US", "BR", "IE", "NL"]
guests = [{"guest_id": i + 1, "name": f"{first[i]} {last[i]}", "email": f"{first[i].lower()}.{last[i].lower()}@example.net",
           "home_country": r.choice(countries)} for i in range(40)]
cities = ["Sintra", "Madeira", "Algarve", "Douro", "Azores", "Evora"]
words = ["Olive", "Cliff", "Harbour", "Vineyard", "Lagoon", "Cork Oak", "Moorish", "Blue Door", "Terrace", "Pine", "Salt", "Garden"]
kinds = ["apartment", "house", "cabin", "villa"]
properties = []
names = set()
while len(properties) < 60:
    kind = r.choice(kinds)
    name = f"{r.choice(words)} {kind.title()} {r.choice(['I', 'II', 'III', 'by the Sea', 'on the Hill', 'Retreat'])}"
    if name in names:
        continue
    names.add(name)
    properties.append({"property_id": len(properties) + 1, "name": name, "city": r.choice(cities), "property_type": kind,
                       "nightly_rate": round(r.uniform(45, 420), 2), "max_guests": {"apartment": 4, "house": 6, "cabin": 3, "villa": 10}[kind],
                       "cancellation_policy": r.choice(["flexible", "moderate", "strict"])})
reservations, booked = [], {}
while len(reservations) < 90:
    p = r.choice(properties)
    start = CLOCK + dt.timedelta(days=r.randint(-90, 60))
    nights = r.randint(2, 7)
    end = start + dt.timedelta(days=nights)
    nights_set = {start + dt.timedelta(days=k) for k in range(nights)}
    if booked.setdefault(p["property_id"], set()) & nights_set:
        continue
    g = r.choice(guests)
    if end <= CLOCK:
        status = r.choice(["completed", "completed", "completed", "cancelled"])
    else:
        status = r.choice(["confirmed", "confirmed", "confirmed", "cancelled"])
    if status != "cancelled":
        booked[p["property_id"]] |= nights_set
    total = round(nights * p["nightly_rate"], 2)
    reservations.append({"reservation_id": len(reservations) + 1, "property_id": p["property_id"], "guest_id": g["guest_id"],
                         "check_in": start.isoformat(), "check_out": end.isoformat(), "guests": r.randint(1, p["max_guests"]),
                         "total": total, "status": status, "refund_amount": round(total / 2, 2) if status == "cancelled" else None})
reviews = []
for res in reservations:
    if res["status"] == "completed" and r.random() < 0.5:
        reviews.append({"review_id": len(reviews) + 1, "reservation_id": res["reservation_id"], "rating": r.randint(3, 5),
                        "comment": r.choice(["Lovely stay", "Great view, noisy street", "Spotless and calm", "Would return"]),
                        "posted_on": res["check_out"]})
print(json.dumps({"guests": guests, "properties": properties, "reservations": reservations, "reviews": reviews}, indent=1))
