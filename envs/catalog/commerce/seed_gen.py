"""Deterministic seed data for the commerce environment: python seed_gen.py > seed.json"""
import datetime as dt
import json
import random

r = random.Random(11)
CLOCK = dt.date(2026, 5, 4)
first = "Amara Bruno Chiara Dmitri Elena Farid Greta Hugo Ingrid Jonas Kaia Liam Mina Nils Olga Pablo Quinn Rosa Sami Tomas Uma Viktor Wanda Xavi Yara Zeno Ada Ben Cleo Dario Esme Felix Gaia Hana Ivo Jade Kofi Lena Milo Noor".split()
last = "Okafor Rossi Bianchi Ivanov Petrova Haddad Lind Moreau Berg Weber Nilsen Walsh Sato Holm Orlova Ortega Reyes Costa Aziz Novak Rao Volkov Kowal Puig Haddid Conti Lopes Meyer Dumas Greco Ellis Fischer Ricci Tanaka Basic Jensen Mensah Vogel Park Said".split()
cities = ["Lisbon", "Porto", "Braga", "Coimbra", "Faro"]
customers = [{"customer_id": i + 1, "name": f"{first[i]} {last[i]}", "email": f"{first[i].lower()}.{last[i].lower()}@example.com",
              "city": r.choice(cities), "store_credit": r.choice([0, 0, 0, 5.0, 12.5])} for i in range(40)]
catalog = {
    "produce": ["Heirloom Tomatoes", "Blood Oranges", "Baby Spinach", "Purple Carrots", "Wild Garlic", "Fennel Bulbs", "Meyer Lemons", "Shiitake Mushrooms"],
    "bakery": ["Sourdough Loaf", "Rye Boule", "Almond Croissant", "Seeded Baguette", "Cardamom Bun", "Olive Focaccia", "Spelt Crackers", "Pao de Lo"],
    "dairy": ["Aged Gouda", "Goat Yogurt", "Cultured Butter", "Burrata", "Sheep Feta", "Skyr", "Comte Wedge", "Kefir"],
    "pantry": ["Smoked Paprika", "Arbequina Olive Oil", "Wildflower Honey", "Black Lentils", "Saffron Threads", "Piri Piri Sauce", "Sea Salt Flakes", "Buckwheat Flour"],
    "drinks": ["Cold Brew Concentrate", "Hibiscus Tea", "Sparkling Yuzu", "Oat Milk", "Vinho Verde", "Kombucha Ginger", "Matcha Powder", "Tonic Water"],
    "frozen": ["Pastel de Nata (6)", "Gyoza Dumplings", "Mango Sorbet", "Green Peas", "Pizza Margherita", "Berry Mix", "Seafood Rice Kit", "Vanilla Gelato"],
    "snacks": ["Sea Salt Chips", "Dark Chocolate 85%", "Roasted Almonds", "Fig Bar", "Rice Crackers", "Trail Mix", "Popcorn Kernels", "Halva"],
    "meat": ["Chorizo", "Free-range Chicken", "Lamb Chops", "Duck Breast", "Bresaola", "Pork Belly", "Turkey Mince", "Beef Brisket"],
}
products = []
for cat, names in catalog.items():
    for n in names:
        products.append({"product_id": len(products) + 1, "name": n, "category": cat,
                         "unit_price": round(r.uniform(1.5, 24.0), 2), "stock": r.choice([0, 3, 8, 15, 25, 40])})
promos = [{"code": "SPRING10", "percent_off": 10, "expires_on": "2026-06-30", "min_total": 0},
          {"code": "BIGBASKET20", "percent_off": 20, "expires_on": "2026-12-31", "min_total": 60},
          {"code": "WINTER15", "percent_off": 15, "expires_on": "2026-02-28", "min_total": 0}]
orders = []
for i in range(90):
    c = r.choice(customers)
    p = r.choice(products)
    q = r.randint(1, 4)
    placed = CLOCK - dt.timedelta(days=r.randint(0, 40))
    delivery = placed + dt.timedelta(days=r.randint(1, 6))
    if delivery < CLOCK:
        status = r.choice(["delivered", "delivered", "delivered", "cancelled", "refunded"])
    else:
        status = r.choice(["placed", "placed", "shipped"])
    promo = "SPRING10" if r.random() < 0.2 else None
    total = round(q * p["unit_price"] * (0.9 if promo else 1), 2)
    orders.append({"order_id": i + 1, "customer_id": c["customer_id"], "product_id": p["product_id"], "quantity": q,
                   "unit_price": p["unit_price"], "promo_code": promo, "total": total, "placed_on": placed.isoformat(),
                   "delivery_date": delivery.isoformat(), "status": status})
refunds = [{"refund_id": k + 1, "order_id": o["order_id"], "amount": o["total"], "reason": "damaged on arrival",
            "issued_on": o["delivery_date"]} for k, o in enumerate(o for o in orders if o["status"] == "refunded")]
print(json.dumps({"customers": customers, "products": products, "promo_codes": promos, "orders": orders, "refunds": refunds}, indent=1))
