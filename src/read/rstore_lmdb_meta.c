/*
 * rstore_lmdb_meta.c — the engine's own records in an "lmdb" read store:
 * the checkpoint ("#cleave" → "checkpoint" → int64 little-endian), dead
 * letters ("#dead": 8-byte big-endian position → JSON {"position","type",
 * "stream","error","data"}), and the canonical dump used by verify.
 */
#include <string.h>

#include "core/util.h"
#include "read/rstore_lmdb_int.h"

int cl_lm_checkpoint_get(cleave_rtx *tx, int64_t *pos)
{
	lm_tx *t = (lm_tx *)tx;
	MDB_val k = {sizeof(LM_CHECKPOINT) - 1, (void *)LM_CHECKPOINT}, v;
	MDB_dbi dbi;
	int rc = cl_lm_dbi(t, LM_META, false, &dbi), mrc;
	*pos = 0;
	if (rc == CLEAVE_ENOTFOUND)
		return 0;
	if (rc)
		return rc;
	mrc = mdb_get(t->txn, dbi, &k, &v);
	if (mrc == MDB_NOTFOUND)
		return 0;
	if (mrc)
		return cl_lm_err(t->s, mrc, "checkpoint");
	if (v.mv_size != 8)
		return cl_err(CLEAVE_ECORRUPT,
		              "lmdb %s: checkpoint of %zu bytes",
		              t->s->base.path, v.mv_size);
	*pos = cl_get_le64(v.mv_data);
	return 0;
}

int cl_lm_checkpoint_set(cleave_rtx *tx, int64_t pos)
{
	unsigned char b[8];
	cl_put_le64(b, pos);
	return cl_lm_put(tx, LM_META, LM_CHECKPOINT, b, sizeof(b));
}

int cl_lm_dead_letter_add(cleave_rtx *tx, const cleave_event *ev,
                          const char *error)
{
	lm_tx *t = (lm_tx *)tx;
	unsigned char kb[8];
	MDB_val k = {sizeof(kb), kb}, v;
	MDB_dbi dbi;
	cleave_buf b;
	int rc, mrc;
	if (!tx->write)
		return cl_err(CLEAVE_EREADONLY, "lmdb: dead letter in a "
		                                "read-only transaction");
	for (int i = 0; i < 8; i++)
		kb[i] = (unsigned char)((uint64_t)ev->position >> (56 - 8 * i));
	cleave_buf_init(&b);
	cl_dead_letter_json(&b, ev, error);
	if (b.oom) {
		rc = cl_err(CLEAVE_ENOMEM, "lmdb: out of memory");
		goto out;
	}
	if ((rc = cl_lm_dbi(t, LM_DEAD, true, &dbi)))
		goto out;
	v.mv_size = b.len;
	v.mv_data = b.p;
	if ((mrc = mdb_put(t->txn, dbi, &k, &v, 0)))
		rc = cl_lm_err(t->s, mrc, "dead letter");
out:
	cleave_buf_free(&b);
	return rc;
}

int cl_lm_dead_letter_count(cleave_rtx *tx, int64_t *n)
{
	lm_tx *t = (lm_tx *)tx;
	MDB_stat st;
	MDB_dbi dbi;
	int rc = cl_lm_dbi(t, LM_DEAD, false, &dbi), mrc;
	*n = 0;
	if (rc == CLEAVE_ENOTFOUND)
		return 0;
	if (rc)
		return rc;
	if ((mrc = mdb_stat(t->txn, dbi, &st)))
		return cl_lm_err(t->s, mrc, "dead letter count");
	*n = (int64_t)st.ms_entries;
	return 0;
}

static int dump_ns(lm_tx *t, const char *name, cl_dump_fn fn, void *arg)
{
	MDB_cursor *c;
	MDB_val k, v;
	MDB_dbi dbi;
	int rc = cl_lm_dbi(t, name, false, &dbi), mrc;
	if (rc == CLEAVE_ENOTFOUND)
		return cl_err(CLEAVE_EIO,
		              "lmdb %s: namespace %s was created after this "
		              "read-only store was opened; reopen it",
		              t->s->base.path, name);
	if (rc)
		return rc;
	if ((mrc = mdb_cursor_open(t->txn, dbi, &c)))
		return cl_lm_err(t->s, mrc, "dump");
	for (mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST); !mrc;
	     mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		rc = fn(arg, name, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
		if (rc)
			break;
	}
	if (!rc && mrc != MDB_NOTFOUND)
		rc = cl_lm_err(t->s, mrc, "dump");
	mdb_cursor_close(c);
	return rc;
}

/* Namespaces in name order (the main database's order), keys in byte
 * order.  The derived "~z:" indexes are data too and are dumped; the
 * reserved "#" databases are not.  fn returns 0 to go on, 1 to stop, <0
 * to fail with that code.  Nothing here writes, so the cursor over the
 * main database stays valid while each namespace is walked. */
int cl_lm_dump(cleave_rtx *tx, cl_dump_fn fn, void *arg)
{
	lm_tx *t = (lm_tx *)tx;
	char name[CL_NS_IMAX + 1];
	MDB_cursor *c;
	MDB_val k, v;
	int rc = 0, mrc;
	if ((mrc = mdb_cursor_open(t->txn, t->s->main_dbi, &c)))
		return cl_lm_err(t->s, mrc, "dump");
	for (mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST); !mrc;
	     mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (k.mv_size == 0 || k.mv_size > CL_NS_IMAX ||
		    memchr(k.mv_data, 0, k.mv_size) ||
		    ((const char *)k.mv_data)[0] == '#')
			continue;
		memcpy(name, k.mv_data, k.mv_size);
		name[k.mv_size] = 0;
		if ((rc = dump_ns(t, name, fn, arg)))
			break;
	}
	if (!rc && mrc != MDB_NOTFOUND)
		rc = cl_lm_err(t->s, mrc, "dump");
	mdb_cursor_close(c);
	return rc < 0 ? rc : 0;
}
