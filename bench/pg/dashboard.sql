-- The shop's dashboard queries run against the write tables: revenue per
-- country and day, best sellers, product search with filters.  The
-- "one database, two masters" load of workload 6.
\set r random(1, 3)
\set c random(1, 10)
\set w random(1, 1000)
\set maxp random(1000, 100000)
\if :r = 1
SELECT to_char(to_timestamp(placed_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, count(*) FILTER (WHERE status = 'placed') AS orders, sum(total_cents) FILTER (WHERE status = 'placed') AS revenue_cents FROM orders WHERE country = (ARRAY['SE','DE','FR','US','GB','JP','BR','IN','NL','ES'])[:c] AND placed_at >= extract(epoch FROM now() - interval '30 days')::bigint GROUP BY 1 ORDER BY 1;
\elif :r = 2
SELECT ol.product_id, sum(ol.quantity) AS sold FROM order_lines ol JOIN orders o ON o.order_id = ol.order_id WHERE o.status = 'placed' GROUP BY ol.product_id ORDER BY sold DESC, ol.product_id LIMIT 10;
\else
SELECT p.product_id, p.name, p.category, p.price_cents, i.stock FROM products p JOIN inventory i ON i.product_id = p.product_id WHERE p.name LIKE '%' || (:w % 100) || '%' AND p.price_cents <= :maxp AND i.stock > 0 ORDER BY p.price_cents LIMIT 10;
\endif
