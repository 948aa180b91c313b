-- Vacation-rental stays: guests book properties for date ranges; nights never overlap for one
-- property; cancellations refund by the property's policy; completed stays can be reviewed once.
CREATE TABLE guests (
  guest_id      INTEGER PRIMARY KEY,
  name          TEXT NOT NULL,
  email         TEXT NOT NULL UNIQUE,
  home_country  TEXT NOT NULL
);
CREATE TABLE properties (
  property_id          INTEGER PRIMARY KEY,
  name                 TEXT NOT NULL,
  city                 TEXT NOT NULL,
  property_type        TEXT NOT NULL CHECK (property_type IN ('apartment', 'house', 'cabin', 'villa')),
  nightly_rate         REAL NOT NULL CHECK (nightly_rate > 0),
  max_guests           INTEGER NOT NULL CHECK (max_guests > 0),
  cancellation_policy  TEXT NOT NULL CHECK (cancellation_policy IN ('flexible', 'moderate', 'strict'))
);
CREATE TABLE reservations (
  reservation_id  INTEGER PRIMARY KEY,
  property_id     INTEGER NOT NULL REFERENCES properties(property_id),
  guest_id        INTEGER NOT NULL REFERENCES guests(guest_id),
  check_in        TEXT NOT NULL,
  check_out       TEXT NOT NULL CHECK (check_out > check_in),
  guests          INTEGER NOT NULL CHECK (guests > 0),
  total           REAL NOT NULL,
  status          TEXT NOT NULL CHECK (status IN ('confirmed', 'cancelled', 'completed')),
  refund_amount   REAL
);
CREATE TABLE reviews (
  review_id       INTEGER PRIMARY KEY,
  reservation_id  INTEGER NOT NULL UNIQUE REFERENCES reservations(reservation_id),
  rating          INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
  comment         TEXT NOT NULL,
  posted_on       TEXT NOT NULL
);
CREATE INDEX reservations_property ON reservations(property_id, status);
CREATE INDEX reservations_guest ON reservations(guest_id, status);
