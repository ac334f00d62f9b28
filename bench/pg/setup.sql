-- Added to the shop's own write schema (printed by `inproc schema`) for the
-- PostgreSQL-as-the-single-database baseline: the outbox the events go to
-- (in the same transaction as the state change), sequences for ids (what a
-- PostgreSQL user would use instead of a counter row), the index a DBA
-- would add for the revenue dashboard, and the seed data of the Cleave runs.
CREATE TABLE outbox (
  id BIGSERIAL PRIMARY KEY,
  stream TEXT NOT NULL,
  type TEXT NOT NULL,
  data TEXT NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE SEQUENCE cart_seq;
CREATE SEQUENCE order_seq;
CREATE INDEX orders_by_country_day ON orders (country, placed_at);

INSERT INTO users (user_id, name, country, registered_at)
SELECT 'u' || i, 'User ' || i,
       (ARRAY['SE','DE','FR','US','GB','JP','BR','IN','NL','ES'])[i % 10 + 1],
       extract(epoch FROM now())::bigint
FROM generate_series(1, 1000) i;
INSERT INTO products (product_id, name, category, description, price_cents, added_at)
SELECT 'p' || i, 'product ' || i,
       (ARRAY['kitchen','garden','books','toys','audio','sports','office','travel'])[i % 8 + 1],
       'a product for benchmarks', 100 + (i * 7919) % 99900, 0
FROM generate_series(1, 1000) i;
INSERT INTO inventory SELECT 'p' || i, 500000000 FROM generate_series(1, 1000) i;
INSERT INTO products (product_id, name, category, description, price_cents, added_at)
SELECT 's' || i, 'scarce ' || i, 'toys', 'out of stock', 1000, 0
FROM generate_series(1, 10) i;
INSERT INTO inventory SELECT 's' || i, 0 FROM generate_series(1, 10) i;
INSERT INTO promos VALUES ('BENCH10', 10, 1000000000, 0, 4102444800);
VACUUM ANALYZE;
