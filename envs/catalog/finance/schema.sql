-- Small-business invoicing: invoices are drafted with lines, sent (which fixes their dates),
-- paid in one or more payments, voided while unpaid, or reduced by credit notes.
CREATE TABLE clients (
  client_id           INTEGER PRIMARY KEY,
  name                TEXT NOT NULL,
  email               TEXT NOT NULL UNIQUE,
  payment_terms_days  INTEGER NOT NULL CHECK (payment_terms_days IN (7, 14, 30, 60))
);
CREATE TABLE invoices (
  invoice_id   INTEGER PRIMARY KEY,
  client_id    INTEGER NOT NULL REFERENCES clients(client_id),
  number       TEXT NOT NULL UNIQUE,
  status       TEXT NOT NULL CHECK (status IN ('draft', 'sent', 'paid', 'void')),
  issue_date   TEXT,
  due_date     TEXT,
  CHECK (status = 'draft' OR (issue_date IS NOT NULL AND due_date >= issue_date) OR status = 'void')
);
CREATE TABLE invoice_lines (
  line_id      INTEGER PRIMARY KEY,
  invoice_id   INTEGER NOT NULL REFERENCES invoices(invoice_id),
  description  TEXT NOT NULL,
  quantity     REAL NOT NULL CHECK (quantity > 0),
  unit_price   REAL NOT NULL CHECK (unit_price >= 0)
);
CREATE TABLE payments (
  payment_id  INTEGER PRIMARY KEY,
  invoice_id  INTEGER NOT NULL REFERENCES invoices(invoice_id),
  amount      REAL NOT NULL CHECK (amount > 0),
  method      TEXT NOT NULL CHECK (method IN ('bank_transfer', 'card', 'cash')),
  paid_on     TEXT NOT NULL
);
CREATE TABLE credit_notes (
  credit_note_id  INTEGER PRIMARY KEY,
  invoice_id      INTEGER NOT NULL REFERENCES invoices(invoice_id),
  amount          REAL NOT NULL CHECK (amount > 0),
  reason          TEXT NOT NULL,
  issued_on       TEXT NOT NULL
);
CREATE INDEX invoices_client ON invoices(client_id, status);
