// Emmett (Node.js event sourcing, @event-driven-io/emmett-sqlite 0.38.5)
// doing what Cleave's Restock does: command -> decide on the stream's state
// -> append the event -> an inline projection updates a product card in the
// same SQLite database.  SQLite in WAL mode with its default synchronous
// (FULL): every append is a durable commit.
//
//   node bench.mjs FILE SECONDS CONCURRENCY   -> one JSON line on stdout
import { CommandHandler, projection, projections } from '@event-driven-io/emmett';
import { getSQLiteEventStore, sqliteConnection } from '@event-driven-io/emmett-sqlite';

const [file, seconds = '5', conc = '1'] = process.argv.slice(2);
const products = 1000;

const setup = sqliteConnection({ fileName: file });
await setup.command(
  'CREATE TABLE IF NOT EXISTS product_cards (product_id TEXT PRIMARY KEY, doc TEXT NOT NULL)');
setup.close();

const cards = projection({
  name: 'product_cards',
  canHandle: ['ProductRestocked'],
  handle: async (events, { connection }) => {
    for (const e of events)
      await connection.command(
        'INSERT INTO product_cards (product_id, doc) VALUES (?, ?) ' +
        'ON CONFLICT (product_id) DO UPDATE SET doc = excluded.doc',
        [e.data.productId, JSON.stringify({ productId: e.data.productId, stock: e.data.stock })]);
  },
});

const store = getSQLiteEventStore({ fileName: file, projections: projections.inline([cards]) });
const handle = CommandHandler({
  evolve: (state, e) => ({ stock: e.data.stock }),
  initialState: () => ({ stock: 0 }),
});

const lat = [];
let ok = 0, errors = 0, firstError = null;
const end = Date.now() + Number(seconds) * 1000;
async function worker() {
  while (Date.now() < end) {
    const pid = 'p' + (1 + Math.floor(Math.random() * products));
    const t = process.hrtime.bigint();
    try {
      await handle(store, 'product-' + pid, (s) => ({
        type: 'ProductRestocked',
        data: { productId: pid, quantity: 1, stock: s.stock + 1 },
      }));
      ok++;
      lat.push(Number(process.hrtime.bigint() - t) / 1e6);
    } catch (err) {
      errors++;
      firstError = firstError || String(err && err.message || err);
      if (errors > 1000) break;
    }
  }
}
const t0 = Date.now();
await Promise.all(Array.from({ length: Number(conc) }, worker));
const secs = (Date.now() - t0) / 1000;
lat.sort((a, b) => a - b);
const q = (x) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(x * lat.length))] : null);
console.log(JSON.stringify({
  concurrency: Number(conc), seconds: secs, commands_per_s: ok / secs,
  ok, errors, first_error: firstError, p50_ms: q(0.5), p99_ms: q(0.99),
}));
process.exit(0);
