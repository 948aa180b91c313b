"""Clinic desk tools (synthetic data). Rules enforced here: only open future slots can be booked,
a patient holds one appointment per day, appointments change or cancel at least 24 hours ahead,
a reschedule stays with the same specialty and reopens the old slot, refills need an unexpired
prescription with refills left and at most one request per prescription per day."""
from datetime import datetime, timedelta

from envfactory.envs import ToolError

NOTICE = timedelta(hours=24)


def _now(ctx):
    return datetime.fromisoformat(ctx.now().replace("Z", ""))


def _appointment(ctx, appointment_id):
    row = ctx.one("SELECT a.*, s.starts_at, s.practitioner_id, p.name AS practitioner_name, p.specialty FROM appointments a "
                  "JOIN slots s USING (slot_id) JOIN practitioners p USING (practitioner_id) WHERE a.appointment_id = ?",
                  (appointment_id,))
    if row is None:
        raise ToolError(f"appointment {appointment_id} does not exist")
    return row


def find_patient(ctx, email):
    row = ctx.one("SELECT * FROM patients WHERE lower(email) = lower(?)", (email.strip(),))
    if row is None:
        raise ToolError(f"no patient has the email {email!r}")
    return row


def list_practitioners(ctx, specialty=None):
    if specialty:
        return {"practitioners": ctx.all("SELECT * FROM practitioners WHERE specialty = ? ORDER BY name", (specialty,))}
    return {"practitioners": ctx.all("SELECT * FROM practitioners ORDER BY specialty, name")}


def find_open_slots(ctx, practitioner_id=None, specialty=None, date_from=None, date_to=None, limit=10):
    where, params = ["s.status = 'open'", "s.starts_at > ?"], [ctx.now().replace("Z", "")]
    if practitioner_id is not None:
        ctx.get("practitioners", practitioner_id, "practitioner")
        where.append("s.practitioner_id = ?")
        params.append(practitioner_id)
    if specialty:
        where.append("p.specialty = ?")
        params.append(specialty)
    if date_from:
        where.append("s.starts_at >= ?")
        params.append(date_from)
    if date_to:
        where.append("s.starts_at < date(?, '+1 day')")
        params.append(date_to)
    rows = ctx.all("SELECT s.slot_id, s.practitioner_id, p.name AS practitioner_name, p.specialty, s.starts_at FROM slots s "
                   f"JOIN practitioners p USING (practitioner_id) WHERE {' AND '.join(where)} ORDER BY s.starts_at, s.slot_id LIMIT ?",
                   [*params, limit])
    return {"slots": rows}


def list_patient_appointments(ctx, patient_id, status=None):
    ctx.get("patients", patient_id, "patient")
    sql = ("SELECT a.appointment_id, a.slot_id, s.starts_at, p.name AS practitioner_name, p.specialty, a.reason, a.status "
           "FROM appointments a JOIN slots s USING (slot_id) JOIN practitioners p USING (practitioner_id) WHERE a.patient_id = ?")
    params = [patient_id]
    if status:
        sql += " AND a.status = ?"
        params.append(status)
    return {"patient_id": patient_id, "appointments": ctx.all(sql + " ORDER BY s.starts_at DESC", params)}


def get_appointment(ctx, appointment_id):
    return _appointment(ctx, appointment_id)


def _bookable(ctx, slot_id, patient_id, ignore_appointment=None):
    slot = ctx.get("slots", slot_id, "slot")
    if slot["status"] != "open":
        raise ToolError(f"slot {slot_id} is already booked")
    if datetime.fromisoformat(slot["starts_at"]) <= _now(ctx):
        raise ToolError(f"slot {slot_id} at {slot['starts_at']} is in the past")
    same_day = ctx.one("SELECT a.appointment_id FROM appointments a JOIN slots s USING (slot_id) WHERE a.patient_id = ? "
                       "AND a.status = 'booked' AND substr(s.starts_at, 1, 10) = ? AND a.appointment_id != ?",
                       (patient_id, slot["starts_at"][:10], ignore_appointment or -1))
    if same_day:
        raise ToolError(f"patient {patient_id} already has appointment {same_day['appointment_id']} on {slot['starts_at'][:10]}")
    return slot


def book_appointment(ctx, patient_id, slot_id, reason):
    ctx.get("patients", patient_id, "patient")
    _bookable(ctx, slot_id, patient_id)
    appointment_id = ctx.insert("appointments", {"patient_id": patient_id, "slot_id": slot_id, "reason": reason.strip(), "status": "booked"})
    ctx.update("slots", slot_id, {"status": "booked"})
    return _appointment(ctx, appointment_id)


def _changeable(ctx, appointment_id):
    appt = _appointment(ctx, appointment_id)
    if appt["status"] != "booked":
        raise ToolError(f"appointment {appointment_id} is {appt['status']}")
    if datetime.fromisoformat(appt["starts_at"]) - _now(ctx) < NOTICE:
        raise ToolError(f"appointment {appointment_id} starts at {appt['starts_at']}, less than 24 hours from now; call the clinic")
    return appt


def reschedule_appointment(ctx, appointment_id, slot_id):
    appt = _changeable(ctx, appointment_id)
    new = _bookable(ctx, slot_id, appt["patient_id"], ignore_appointment=appointment_id)
    specialty = ctx.scalar("SELECT specialty FROM practitioners WHERE practitioner_id = ?", (new["practitioner_id"],))
    if specialty != appt["specialty"]:
        raise ToolError(f"slot {slot_id} is with {specialty}; appointment {appointment_id} needs {appt['specialty']}")
    ctx.update("slots", appt["slot_id"], {"status": "open"})
    ctx.update("slots", slot_id, {"status": "booked"})
    ctx.update("appointments", appointment_id, {"slot_id": slot_id})
    return _appointment(ctx, appointment_id)


def cancel_appointment(ctx, appointment_id):
    appt = _changeable(ctx, appointment_id)
    ctx.update("appointments", appointment_id, {"status": "cancelled"})
    ctx.update("slots", appt["slot_id"], {"status": "open"})
    return _appointment(ctx, appointment_id)


def list_prescriptions(ctx, patient_id):
    ctx.get("patients", patient_id, "patient")
    return {"patient_id": patient_id, "prescriptions": ctx.all(
        "SELECT prescription_id, medication, refills_left, expires_on FROM prescriptions WHERE patient_id = ? ORDER BY prescription_id",
        (patient_id,))}


def request_refill(ctx, prescription_id, pharmacy):
    rx = ctx.get("prescriptions", prescription_id, "prescription")
    if rx["expires_on"] < ctx.today():
        raise ToolError(f"prescription {prescription_id} expired on {rx['expires_on']}; book an appointment to renew it")
    if rx["refills_left"] <= 0:
        raise ToolError(f"prescription {prescription_id} has no refills left")
    if ctx.scalar("SELECT 1 FROM refill_requests WHERE prescription_id = ? AND requested_on = ?", (prescription_id, ctx.today())):
        raise ToolError(f"a refill of prescription {prescription_id} was already requested today")
    request_id = ctx.insert("refill_requests", {"prescription_id": prescription_id, "requested_on": ctx.today(), "pharmacy": pharmacy.strip()})
    ctx.update("prescriptions", prescription_id, {"refills_left": rx["refills_left"] - 1})
    return {**ctx.get("refill_requests", request_id, "refill request"), "refills_left": rx["refills_left"] - 1,
            "medication": rx["medication"]}
