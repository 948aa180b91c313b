-- A clinic's scheduling and care desk (synthetic data): patients book open slots with
-- practitioners; appointments move booked -> completed, or are rescheduled or cancelled;
-- prescriptions carry refills that patients request.
CREATE TABLE patients (
  patient_id   INTEGER PRIMARY KEY,
  name         TEXT NOT NULL,
  email        TEXT NOT NULL UNIQUE,
  birth_year   INTEGER NOT NULL
);
CREATE TABLE practitioners (
  practitioner_id  INTEGER PRIMARY KEY,
  name             TEXT NOT NULL,
  specialty        TEXT NOT NULL CHECK (specialty IN ('general practice', 'dermatology', 'cardiology', 'physiotherapy', 'pediatrics'))
);
CREATE TABLE slots (
  slot_id          INTEGER PRIMARY KEY,
  practitioner_id  INTEGER NOT NULL REFERENCES practitioners(practitioner_id),
  starts_at        TEXT NOT NULL,
  status           TEXT NOT NULL CHECK (status IN ('open', 'booked')),
  UNIQUE (practitioner_id, starts_at)
);
CREATE TABLE appointments (
  appointment_id   INTEGER PRIMARY KEY,
  patient_id       INTEGER NOT NULL REFERENCES patients(patient_id),
  slot_id          INTEGER NOT NULL REFERENCES slots(slot_id),
  reason           TEXT NOT NULL,
  status           TEXT NOT NULL CHECK (status IN ('booked', 'completed', 'cancelled'))
);
CREATE TABLE prescriptions (
  prescription_id  INTEGER PRIMARY KEY,
  patient_id       INTEGER NOT NULL REFERENCES patients(patient_id),
  practitioner_id  INTEGER NOT NULL REFERENCES practitioners(practitioner_id),
  medication       TEXT NOT NULL,
  refills_left     INTEGER NOT NULL CHECK (refills_left >= 0),
  expires_on       TEXT NOT NULL
);
CREATE TABLE refill_requests (
  request_id       INTEGER PRIMARY KEY,
  prescription_id  INTEGER NOT NULL REFERENCES prescriptions(prescription_id),
  requested_on     TEXT NOT NULL,
  pharmacy         TEXT NOT NULL
);
CREATE INDEX slots_open ON slots(status, starts_at);
CREATE INDEX appointments_patient ON appointments(patient_id, status);
