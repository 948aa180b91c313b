"""Deterministic, synthetic seed data for the health environment: python seed_gen.py > seed.json"""
import datetime as dt
import json
import random

r = random.Random(31)
CLOCK = dt.datetime(2026, 3, 2, 8, 0)
first = "Alma Boris Celia Diego Edith Fabio Gemma Henrik Iris Jakob Kira Leon Maya Nuno Olive Peter Rhea Simon Tara Umar Vivi Wout Xenia Yann Zoe Arne Bella Caio Dina Emil".split()
last = "Santos Weiss Rahman Silva Dubois Kovac Ahmed Lopez Nagy Berger Mendes Ivanova Costa Fischer Park Moreno Sato Horvat Lima Yilmaz Brun Koch Tran Marin Vidal Sousa Keller Pinto Ward Roth".split()
patients = [{"patient_id": i + 1, "name": f"{first[i]} {last[i]}", "email": f"{first[i].lower()}.{last[i].lower()}@example.org",
             "birth_year": r.randint(1945, 2020)} for i in range(30)]
specs = ["general practice", "general practice", "dermatology", "cardiology", "physiotherapy", "pediatrics", "general practice", "physiotherapy"]
docs = ["Dr. Ana Reis", "Dr. Tomas Berg", "Dr. Lea Moser", "Dr. Omar Haddad", "Kai Lindholm", "Dr. Sofia Neri", "Dr. Ravi Nair", "Mia Oberg"]
practitioners = [{"practitioner_id": i + 1, "name": n, "specialty": s} for i, (n, s) in enumerate(zip(docs, specs))]
slots = []
for p in practitioners:
    for day in range(-20, 15):
        d = CLOCK.date() + dt.timedelta(days=day)
        if d.weekday() >= 5 or r.random() < 0.55:
            continue
        for hour in r.sample([9, 10, 11, 14, 15, 16], 2):
            slots.append({"slot_id": len(slots) + 1, "practitioner_id": p["practitioner_id"],
                          "starts_at": f"{d.isoformat()}T{hour:02d}:00:00", "status": "open"})
reasons = ["annual check-up", "skin rash", "knee pain", "follow-up", "vaccination", "blood pressure review", "back pain", "cough"]
appointments = []
for s in slots:
    past = s["starts_at"] < CLOCK.isoformat()
    if r.random() < (0.8 if past else 0.35):
        s["status"] = "booked"
        status = r.choice(["completed", "completed", "cancelled"]) if past else "booked"
        if status == "cancelled":
            s["status"] = "open"
        appointments.append({"appointment_id": len(appointments) + 1, "patient_id": r.randint(1, 30), "slot_id": s["slot_id"],
                             "reason": r.choice(reasons), "status": status})
meds = ["Amoxicillin 500mg", "Lisinopril 10mg", "Cetirizine 10mg", "Metformin 500mg", "Ibuprofen 400mg", "Hydrocortisone cream 1%", "Salbutamol inhaler"]
prescriptions = [{"prescription_id": i + 1, "patient_id": r.randint(1, 30), "practitioner_id": r.choice([1, 2, 3, 4, 7]),
                  "medication": r.choice(meds), "refills_left": r.choice([0, 1, 2, 3]),
                  "expires_on": (CLOCK.date() + dt.timedelta(days=r.randint(-30, 180))).isoformat()} for i in range(40)]
requests = [{"request_id": i + 1, "prescription_id": p["prescription_id"], "requested_on": (CLOCK.date() - dt.timedelta(days=r.randint(3, 40))).isoformat(),
             "pharmacy": r.choice(["Farmacia Central", "Apotheke am Markt", "Corner Pharmacy"])} for i, p in enumerate(prescriptions[:12])]
print(json.dumps({"patients": patients, "practitioners": practitioners, "slots": slots, "appointments": appointments,
                  "prescriptions": prescriptions, "refill_requests": requests}, indent=1))
