-- One checkout of the mix, as an application on PostgreSQL alone would do
-- it: AddToCart x3 then Checkout, each its own transaction that changes the
-- normalized tables AND inserts the event into the outbox.  5% of carts
-- hold a product out of stock (the checkout rolls back, as Cleave's 422),
-- 25% use the promo.  Run with -M prepared (variables are parameters).
\set u random(1, 1000)
\set p1 random(1, 1000)
\set p2 random(1, 1000)
\set p3 random(1, 1000)
\set q1 random(1, 3)
\set q2 random(1, 3)
\set q3 random(1, 3)
\set scarce random(1, 100)
\set s random(1, 10)
\set promo random(1, 4)
-- AddToCart #1 opens the cart
BEGIN;
SELECT 1 FROM users WHERE user_id = 'u' || :u;
SELECT 1 FROM products WHERE product_id = 'p' || :p1;
SELECT 'pc' || nextval('cart_seq') AS cart \gset
INSERT INTO carts (cart_id, user_id, status, opened_at) VALUES (:cart, 'u' || :u, 'open', extract(epoch FROM now())::bigint);
INSERT INTO cart_lines (cart_id, product_id, line_no, quantity) VALUES (:cart, 'p' || :p1, 1, :q1);
INSERT INTO outbox (stream, type, data) VALUES ('cart-' || :cart, 'ItemAddedToCart', json_build_object('cartId', :cart::text, 'userId', 'u' || :u, 'productId', 'p' || :p1, 'quantity', :q1::int, 'line_quantity', :q1::int, 'opened', true)::text);
COMMIT;
-- AddToCart #2
BEGIN;
SELECT 1 FROM users WHERE user_id = 'u' || :u;
SELECT 1 FROM products WHERE product_id = 'p' || :p2;
SELECT user_id, status FROM carts WHERE cart_id = :cart FOR UPDATE;
INSERT INTO cart_lines (cart_id, product_id, line_no, quantity) VALUES (:cart, 'p' || :p2, 2, :q2) ON CONFLICT (cart_id, product_id) DO UPDATE SET quantity = cart_lines.quantity + excluded.quantity;
INSERT INTO outbox (stream, type, data) VALUES ('cart-' || :cart, 'ItemAddedToCart', json_build_object('cartId', :cart::text, 'userId', 'u' || :u, 'productId', 'p' || :p2, 'quantity', :q2::int, 'opened', false)::text);
COMMIT;
-- AddToCart #3 (a product out of stock in 5% of carts)
BEGIN;
SELECT 1 FROM users WHERE user_id = 'u' || :u;
SELECT CASE WHEN :scarce::int <= 5 THEN 's' || :s ELSE 'p' || :p3 END AS p3id \gset
SELECT 1 FROM products WHERE product_id = :p3id;
SELECT user_id, status FROM carts WHERE cart_id = :cart FOR UPDATE;
INSERT INTO cart_lines (cart_id, product_id, line_no, quantity) VALUES (:cart, :p3id, 3, :q3) ON CONFLICT (cart_id, product_id) DO UPDATE SET quantity = cart_lines.quantity + excluded.quantity;
INSERT INTO outbox (stream, type, data) VALUES ('cart-' || :cart, 'ItemAddedToCart', json_build_object('cartId', :cart::text, 'userId', 'u' || :u, 'productId', :p3id::text, 'quantity', :q3::int, 'opened', false)::text);
COMMIT;
-- Checkout
BEGIN;
SELECT country FROM users WHERE user_id = 'u' || :u \gset
SELECT user_id AS owner, status FROM carts WHERE cart_id = :cart FOR UPDATE \gset
SELECT product_id, stock FROM inventory WHERE product_id IN (SELECT product_id FROM cart_lines WHERE cart_id = :cart) ORDER BY product_id FOR UPDATE;
SELECT coalesce(bool_and(i.stock >= l.quantity), false)::int AS ok, coalesce(sum(l.quantity * p.price_cents), 0) AS subtotal FROM cart_lines l JOIN products p ON p.product_id = l.product_id JOIN inventory i ON i.product_id = l.product_id WHERE l.cart_id = :cart \gset
\if :ok
\if :promo = 1
SELECT percent_off, max_uses - uses AS left_uses FROM promos WHERE code = 'BENCH10' AND expires_at > extract(epoch FROM now()) FOR UPDATE \gset
\set discount :subtotal * :percent_off / 100
UPDATE promos SET uses = uses + 1 WHERE code = 'BENCH10';
\else
\set discount 0
\endif
\set total :subtotal - :discount
SELECT 'o-' || nextval('order_seq') AS order_id \gset
INSERT INTO orders (order_id, user_id, cart_id, country, status, subtotal_cents, discount_cents, total_cents, promo_code, placed_at) VALUES (:order_id, 'u' || :u, :cart, :country, 'placed', :subtotal, :discount, :total, CASE WHEN :promo::int = 1 THEN 'BENCH10' END, extract(epoch FROM now())::bigint);
INSERT INTO order_lines (order_id, line_no, product_id, quantity, price_cents) SELECT :order_id, l.line_no, l.product_id, l.quantity, p.price_cents FROM cart_lines l JOIN products p ON p.product_id = l.product_id WHERE l.cart_id = :cart;
UPDATE inventory i SET stock = i.stock - l.quantity FROM cart_lines l WHERE l.cart_id = :cart AND i.product_id = l.product_id;
INSERT INTO outbox (stream, type, data) SELECT 'order-' || :order_id, 'OrderPlaced', json_build_object('orderId', :order_id::text, 'userId', 'u' || :u, 'cartId', :cart::text, 'country', :country::text, 'lines', (SELECT json_agg(json_build_object('productId', l.product_id, 'name', p.name, 'quantity', l.quantity, 'price_cents', p.price_cents, 'stock_after', i.stock) ORDER BY l.line_no) FROM cart_lines l JOIN products p ON p.product_id = l.product_id JOIN inventory i ON i.product_id = l.product_id WHERE l.cart_id = :cart), 'subtotal_cents', :subtotal::bigint, 'discount_cents', :discount::bigint, 'total_cents', :total::bigint, 'placed_at', extract(epoch FROM now())::bigint)::text;
DELETE FROM cart_lines WHERE cart_id = :cart;
UPDATE carts SET status = 'closed', order_id = :order_id WHERE cart_id = :cart;
COMMIT;
\else
ROLLBACK;
\endif
