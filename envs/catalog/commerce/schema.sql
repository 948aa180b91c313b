-- A specialty grocery storefront: customers order products for a delivery date; orders move
-- placed -> shipped -> delivered, can be cancelled while placed, refunded once shipped.
CREATE TABLE customers (
  customer_id    INTEGER PRIMARY KEY,
  name           TEXT NOT NULL,
  email          TEXT NOT NULL UNIQUE,
  city           TEXT NOT NULL,
  store_credit   REAL NOT NULL DEFAULT 0 CHECK (store_credit >= 0)
);
CREATE TABLE products (
  product_id     INTEGER PRIMARY KEY,
  name           TEXT NOT NULL UNIQUE,
  category       TEXT NOT NULL,
  unit_price     REAL NOT NULL CHECK (unit_price > 0),
  stock          INTEGER NOT NULL CHECK (stock >= 0)
);
CREATE TABLE promo_codes (
  code           TEXT PRIMARY KEY,
  percent_off    INTEGER NOT NULL CHECK (percent_off BETWEEN 1 AND 50),
  expires_on     TEXT NOT NULL,
  min_total      REAL NOT NULL DEFAULT 0
);
CREATE TABLE orders (
  order_id       INTEGER PRIMARY KEY,
  customer_id    INTEGER NOT NULL REFERENCES customers(customer_id),
  product_id     INTEGER NOT NULL REFERENCES products(product_id),
  quantity       INTEGER NOT NULL CHECK (quantity > 0),
  unit_price     REAL NOT NULL,
  promo_code     TEXT REFERENCES promo_codes(code),
  total          REAL NOT NULL CHECK (total >= 0),
  placed_on      TEXT NOT NULL,
  delivery_date  TEXT NOT NULL,
  status         TEXT NOT NULL CHECK (status IN ('placed', 'shipped', 'delivered', 'cancelled', 'refunded'))
);
CREATE TABLE refunds (
  refund_id      INTEGER PRIMARY KEY,
  order_id       INTEGER NOT NULL UNIQUE REFERENCES orders(order_id),
  amount         REAL NOT NULL CHECK (amount > 0),
  reason         TEXT NOT NULL,
  issued_on      TEXT NOT NULL
);
CREATE INDEX orders_customer ON orders(customer_id, status);
