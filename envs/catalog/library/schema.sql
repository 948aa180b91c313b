-- Library lending: members borrow copies of books; holds queue for books with no copy left.
CREATE TABLE members (
  member_id   INTEGER PRIMARY KEY,
  name        TEXT NOT NULL,
  email       TEXT NOT NULL UNIQUE,
  status      TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
  joined_on   TEXT NOT NULL,
  max_loans   INTEGER NOT NULL DEFAULT 5
);
CREATE TABLE books (
  book_id          INTEGER PRIMARY KEY,
  title            TEXT NOT NULL,
  author           TEXT NOT NULL,
  isbn             TEXT NOT NULL UNIQUE,
  genre            TEXT NOT NULL,
  published_year   INTEGER NOT NULL,
  total_copies     INTEGER NOT NULL CHECK (total_copies >= 0),
  available_copies INTEGER NOT NULL CHECK (available_copies >= 0 AND available_copies <= total_copies)
);
CREATE TABLE loans (
  loan_id         INTEGER PRIMARY KEY,
  book_id         INTEGER NOT NULL REFERENCES books(book_id),
  member_id       INTEGER NOT NULL REFERENCES members(member_id),
  checked_out_on  TEXT NOT NULL,
  due_on          TEXT NOT NULL,
  returned_on     TEXT,
  renewals        INTEGER NOT NULL DEFAULT 0,
  status          TEXT NOT NULL CHECK (status IN ('active', 'returned'))
);
CREATE TABLE holds (
  hold_id    INTEGER PRIMARY KEY,
  book_id    INTEGER NOT NULL REFERENCES books(book_id),
  member_id  INTEGER NOT NULL REFERENCES members(member_id),
  placed_on  TEXT NOT NULL,
  status     TEXT NOT NULL CHECK (status IN ('waiting', 'cancelled', 'fulfilled'))
);
CREATE INDEX loans_member ON loans(member_id, status);
CREATE INDEX holds_book ON holds(book_id, status);
