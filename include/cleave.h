/*
 * cleave.h — the whole public API of libcleave, a CQRS engine.
 *
 * Not in this header, not API.  Everything else in the tree is private.
 *
 * The flow:  a caller submits a command (cleave_command_submit); one writer
 * thread runs a batch of commands, each in its own savepoint, appends their
 * events to the log in the same transaction, commits once (group commit) and
 * only then completes the callers.  Projection runners tail the log and apply
 * events to read stores, writing their checkpoint in the same read-store
 * transaction.  Queries (cleave_query_run) read only read stores.
 *
 * Conventions
 *  - Functions that act return int: 0 on success, a negative CLEAVE_E* code
 *    on failure.  Predicates return bool.
 *  - cleave_errmsg() returns the detail of the calling thread's last failure
 *    (including the backend's own words); it is valid until the next call
 *    into libcleave on that thread.
 *  - Every pointer handed out says how long it lives.  "Borrowed" means the
 *    caller must not free it.
 *  - JSON values are cJSON trees (Debian's libcjson).  Input handed to a
 *    handler has been checked by Cleave first: valid UTF-8, no duplicate
 *    keys, nesting at most CLEAVE_JSON_MAX_DEPTH, numbers exact (|n| <=
 *    2^53 by their exact decimal value, in any notation; no fraction that
 *    a double would round to an integer), and the command's declared
 *    fields (cleave_field).
 */
#ifndef CLEAVE_H
#define CLEAVE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What this header declares is what libcleave.so exports: the library is
 * built with -fvisibility=hidden, and these declarations are visible. */
#pragma GCC visibility push(default)

#define CLEAVE_VERSION "0.1.0"

/* ------------------------------------------------------------------------
 * Errors.  One list; codes, names and texts are generated from it.
 * The name is the stable machine-readable code used in error JSON.
 * ------------------------------------------------------------------------ */
#define CLEAVE_ERRNO_MAP(X)                                                  \
	X(EINVAL, -1, "invalid_argument", "invalid argument")                  \
	X(ENOTFOUND, -2, "not_found", "not found")                             \
	X(EEXIST, -3, "already_exists", "already exists")                      \
	X(ECONFLICT, -4, "conflict", "concurrency conflict")                   \
	X(EREJECTED, -5, "rejected", "rejected by a business rule")            \
	X(ETOOBIG, -6, "too_large", "too large")                               \
	X(EBUSY, -7, "overloaded", "overloaded, retry later")                  \
	X(ESHUTDOWN, -8, "shutting_down", "shutting down")                     \
	X(ETIMEDOUT, -9, "timeout", "timed out")                               \
	X(ENOTSUP, -10, "not_supported", "not supported by this store")        \
	X(EIO, -11, "io_error", "I/O error")                                   \
	X(ENOSPC, -12, "no_space", "storage full")                             \
	X(ENOMEM, -13, "out_of_memory", "out of memory")                       \
	X(ECORRUPT, -14, "corrupt", "stored data is corrupt")                  \
	X(EINTERNAL, -15, "internal", "internal error")                        \
	X(EPARKED, -16, "parked", "projection parked on a failing event")      \
	X(EREADONLY, -17, "read_only", "read-only transaction")                \
	X(EFAILED, -18, "write_store_failed",                                  \
	  "the write store failed; restart required")                          \
	X(EBADJSON, -19, "malformed_json", "malformed JSON")

enum {
	CLEAVE_OK = 0,
#define CLEAVE_XX(name, val, code, text) CLEAVE_##name = (val),
	CLEAVE_ERRNO_MAP(CLEAVE_XX)
#undef CLEAVE_XX
};

/* Static English text for an error code ("success" for 0). Never NULL. */
const char *cleave_strerror(int rc);
/* Stable snake_case name for an error code, e.g. "not_found". Never NULL. */
const char *cleave_errname(int rc);
/* The calling thread's last detailed error message, or "" if none.
 * Valid until the calling thread's next call into libcleave. */
const char *cleave_errmsg(void);

/* Records `fmt` as the calling thread's detailed message (cleave_errmsg)
 * and returns rc: handlers use it to explain a failure, e.g. a projection
 * handler's error becomes the parked projection's last_error. */
int cleave_error(int rc, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Prints a JSON value compactly, integers as exact decimals (cJSON's own
 * printer turns 10^15 into 1e+15).  malloc'd: free() it; NULL when out of
 * memory.  *len (may be NULL) gets the length. */
char *cleave_json_print(const cJSON *v, size_t *len);

/* Writes s[0..n) as a JSON string literal, quotes included, at `out`,
 * which must have room for 6 * n + 2 bytes (every byte as \u00XX at
 * worst).  Control characters, '"' and '\\' are escaped; a byte that does
 * not start a valid UTF-8 sequence becomes U+FFFD, so the output is always
 * valid JSON whatever s holds.  Returns the end of what it wrote; adds no
 * NUL.  For documents written straight as text. */
char *cleave_json_escape(char *out, const char *s, size_t n);

/* True when s[0..n) is valid UTF-8: shortest forms only, no surrogates,
 * nothing past U+10FFFF.  (A NUL byte is valid UTF-8; callers that keep C
 * strings refuse it themselves.) */
bool cleave_utf8_valid(const char *s, size_t n);

/* Typed access to the members of a JSON object (NULL obj is fine).
 *  - cleave_json_str: the string member `name`, or NULL when absent, null
 *    or not a string.  Points into obj.
 *  - cleave_json_int: the member as an exact integer (within ±2^53), or
 *    dflt when absent or not one.
 * A command's input has been checked against its fields (cleave_field), so
 * a handler reads a required field with these and needs no check.  Data a
 * projection reads back (events, its own documents) should be as it was
 * written; the _get forms say when it is not:
 *  - cleave_json_get_str: 0 with *out set, or CLEAVE_ECORRUPT when the
 *    member is absent, not a string or empty;
 *  - cleave_json_get_int: 0 with *out set, or CLEAVE_ECORRUPT when it is
 *    absent or not an exact integer. */
const char *cleave_json_str(const cJSON *obj, const char *name);
int64_t cleave_json_int(const cJSON *obj, const char *name, int64_t dflt);
int cleave_json_get_str(const cJSON *obj, const char *name, const char **out);
int cleave_json_get_int(const cJSON *obj, const char *name, int64_t *out);

/* Days: UTC calendar days as numbers (days since 1970-01-01, negative
 * before it) and as "YYYY-MM-DD" keys, which sort as the numbers do.
 *  - cleave_day_of: the day of a unix time in seconds (floor);
 *  - cleave_day_format: day as YYYY-MM-DD into out (years outside
 *    0000..9999 print as 0000);
 *  - cleave_day_parse: strictly YYYY-MM-DD, a real date of years
 *    0001..9999; false otherwise. */
int64_t cleave_day_of(int64_t unix_s);
void cleave_day_format(int64_t day, char out[11]);
bool cleave_day_parse(const char *s, int64_t *day);

/* ------------------------------------------------------------------------
 * Text: a growable byte buffer, the one every part of Cleave builds text
 * with (answers, documents, keys, messages).  Start it zeroed
 * (CLEAVE_BUF_INIT or cleave_buf_init); p is NUL-terminated after every
 * append (and NULL until the first).  Out of memory is sticky: `oom` is
 * set, later appends do nothing and cleave_buf_steal gives NULL, so a
 * caller checks once at the end.
 * ------------------------------------------------------------------------ */
typedef struct cleave_buf {
	char *p;
	size_t len, cap;
	bool oom;
} cleave_buf;

#define CLEAVE_BUF_INIT {NULL, 0, 0, false}

void cleave_buf_init(cleave_buf *b);
/* Frees the memory and leaves b empty (reusable). */
void cleave_buf_free(cleave_buf *b);
/* Empties b, keeping its memory (and clearing oom). */
void cleave_buf_reset(cleave_buf *b);
/* Room for `more` bytes and the NUL; false when out of memory. */
bool cleave_buf_reserve(cleave_buf *b, size_t more);
void cleave_buf_add(cleave_buf *b, const void *p, size_t n);
void cleave_buf_adds(cleave_buf *b, const char *s);
void cleave_buf_addc(cleave_buf *b, char c);
void cleave_buf_addf(cleave_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void cleave_buf_add_i64(cleave_buf *b, int64_t v);
void cleave_buf_add_u64(cleave_buf *b, uint64_t v);
/* s[0..n) as a JSON string literal (cleave_json_escape). */
void cleave_buf_add_jstr(cleave_buf *b, const char *s, size_t n);
/* A JSON text written straight into a buffer, for documents and answers
 * built from event data (no tree to allocate, print and free).  Values are
 * written in call order; the writer puts the commas and the colons.
 * Strings are escaped (cleave_json_escape).  Start from CLEAVE_JW_INIT;
 * cleave_jw_done hands over the text (malloc'd: free() it), or NULL when
 * memory ran out (sticky; the buffer is then freed); cleave_jw_free drops
 * it without taking it.  The text is valid JSON when every open has its
 * close and every key its value. */
typedef struct cleave_jw {
	cleave_buf b;
	bool more; /* the next value follows another: a comma first */
} cleave_jw;

#define CLEAVE_JW_INIT {CLEAVE_BUF_INIT, false}

void cleave_jw_open(cleave_jw *w, char brace);  /* '{' or '[' */
void cleave_jw_close(cleave_jw *w, char brace); /* '}' or ']' */
void cleave_jw_key(cleave_jw *w, const char *k); /* before a member */
void cleave_jw_str(cleave_jw *w, const char *s); /* NULL writes null */
void cleave_jw_strn(cleave_jw *w, const char *s, size_t n);
void cleave_jw_int(cleave_jw *w, int64_t v);
void cleave_jw_bool(cleave_jw *w, bool v);
void cleave_jw_null(cleave_jw *w);
/* A JSON value given as text (the caller vouches that it is one). */
void cleave_jw_raw(cleave_jw *w, const char *json, size_t n);
char *cleave_jw_done(cleave_jw *w, size_t *len);
void cleave_jw_free(cleave_jw *w);

/* Appends Cleave's error document: {"error": {"code": code, "message":
 * msg}}, both escaped. */
void cleave_buf_add_error(cleave_buf *b, const char *code, const char *msg);
/* Hands the NUL-terminated bytes to the caller (malloc'd: free() them;
 * *len, when len is not NULL, gets their length) and leaves b empty; NULL
 * after an allocation failure (b is then freed). */
char *cleave_buf_steal(cleave_buf *b, size_t *len);

/* Limits that are fixed at build time (runtime limits live in
 * cleave_config). Hitting one is an error that names it, never a crash. */
#define CLEAVE_JSON_MAX_DEPTH 32      /* nesting of command bodies */
#define CLEAVE_NAME_MAX 64            /* command, query, projection names */
#define CLEAVE_STREAM_MAX 256         /* stream id length in bytes */
#define CLEAVE_KEY_MAX 480            /* read-store key length in bytes */
#define CLEAVE_IDEMPOTENCY_KEY_MAX 128
#define CLEAVE_TRACE_ID_MAX 64

typedef struct cleave_engine cleave_engine;
typedef struct cleave_cmd cleave_cmd;     /* a command being handled */
typedef struct cleave_rows cleave_rows;   /* a write-side result cursor */
typedef struct cleave_rtx cleave_rtx;     /* a read-store transaction */
typedef struct cleave_query cleave_query; /* a query being answered */
typedef struct cleave_domain cleave_domain;

/* ------------------------------------------------------------------------
 * Values bound into SQL, on the write side and in SQL read stores.
 * SQL uses '?' placeholders and a portable dialect: it runs on SQLite
 * today and PostgreSQL (the '?' are rewritten to $n) to scale.
 * ------------------------------------------------------------------------ */
typedef enum cleave_type {
	CLEAVE_NULL = 0,
	CLEAVE_INT = 1,
	CLEAVE_REAL = 2,
	CLEAVE_TEXT = 3,
} cleave_type;

typedef struct cleave_value {
	cleave_type type;
	int64_t i;
	double d;
	const char *s; /* borrowed; need not be NUL-terminated when n set */
	size_t n;      /* byte length of s */
} cleave_value;

static inline cleave_value cleave_int(int64_t v)
{
	cleave_value x = {CLEAVE_INT, v, 0, NULL, 0};
	return x;
}
static inline cleave_value cleave_real(double v)
{
	cleave_value x = {CLEAVE_REAL, 0, v, NULL, 0};
	return x;
}
cleave_value cleave_text(const char *s); /* NULL gives CLEAVE_NULL */
static inline cleave_value cleave_textn(const char *s, size_t n)
{
	cleave_value x = {CLEAVE_TEXT, 0, 0, s, n};
	return x;
}
static inline cleave_value cleave_null(void)
{
	cleave_value x = {CLEAVE_NULL, 0, 0, NULL, 0};
	return x;
}

/* Row cursors, from cleave_cmd_query() and cleave_rtx_query().
 * cleave_rows_next() returns 1 with a row, 0 at the end, <0 on error.
 * Column accessors read the current row; a returned text pointer is valid
 * until the next cleave_rows_next() or cleave_rows_close(). */
int cleave_rows_next(cleave_rows *r);
int cleave_rows_columns(cleave_rows *r);
bool cleave_rows_is_null(cleave_rows *r, int col);
int64_t cleave_rows_int(cleave_rows *r, int col);
double cleave_rows_real(cleave_rows *r, int col);
const char *cleave_rows_text(cleave_rows *r, int col, size_t *len);
/* Finishes the cursor; always safe on NULL. */
void cleave_rows_close(cleave_rows *r);

/* ------------------------------------------------------------------------
 * Commands: declared fields, handler, and what the handler may do.
 * ------------------------------------------------------------------------ */
typedef enum cleave_field_type {
	CLEAVE_F_STRING = 1, /* JSON string, valid UTF-8, 1..max_len bytes */
	CLEAVE_F_INT = 2,    /* JSON number that is an integer, min..max */
	CLEAVE_F_BOOL = 3,
	CLEAVE_F_OBJECT = 4,
	CLEAVE_F_ARRAY = 5,
} cleave_field_type;

/* One declared field of a command body.  The engine checks the body against
 * the table before the handler runs, on the caller's thread: a missing
 * required field, a wrong type, a number out of [min,max], a string longer
 * than max_len (or empty), or a field not in the table is CLEAVE_EINVAL
 * (HTTP 400) naming the field; nothing is written. */
typedef struct cleave_field {
	const char *name;
	cleave_field_type type;
	bool required;
	int64_t min, max;  /* CLEAVE_F_INT; both 0 means any exact integer */
	size_t max_len;    /* CLEAVE_F_STRING; 0 means 256 */
	const char *charset; /* CLEAVE_F_STRING: NULL any text; "id" means
			       [A-Za-z0-9_.:-]; "upper" means [A-Z] */
} cleave_field;

/* A command handler runs on the writer thread, inside its own savepoint of
 * the batch transaction.  `in` is the checked body (borrowed, valid during
 * the call).  Return 0 to commit its writes and events, or the code given to
 * cleave_cmd_fail() (any negative code) to roll back its savepoint alone.
 * Handlers must not block on anything but the write transaction. */
typedef int (*cleave_command_fn)(cleave_cmd *c, const cJSON *in);

typedef struct cleave_command_def {
	const char *name;            /* e.g. "Checkout"; [A-Za-z0-9_] */
	cleave_command_fn handle;
	const cleave_field *fields;  /* terminated by {NULL}; NULL = no body */
	const char *summary;         /* one line for --help and docs */
} cleave_command_def;

/* Parameterised SQL on the batch transaction.  `changes` (may be NULL)
 * receives the number of rows changed.  Errors: CLEAVE_EEXIST on a
 * uniqueness violation, CLEAVE_EIO/ENOSPC/EINTERNAL from the store (the
 * handler should return it). */
int cleave_cmd_exec(cleave_cmd *c, const char *sql, const cleave_value *args,
		    int nargs, int64_t *changes);
/* Opens a cursor; close it before the handler returns.  A statement that
 * is not a SELECT (an UPDATE ... RETURNING, say) counts as a change of
 * the write model, as cleave_cmd_exec's do: if the command then fails,
 * the engine undoes it. */
int cleave_cmd_query(cleave_cmd *c, const char *sql, const cleave_value *args,
		     int nargs, cleave_rows **out);
/* Convenience: first column of the first row as an integer.
 * CLEAVE_ENOTFOUND when there is no row or it is NULL. */
int cleave_cmd_query_int(cleave_cmd *c, const char *sql,
			 const cleave_value *args, int nargs, int64_t *out);

/* Appends an event to `stream` (its next version), in the batch
 * transaction.  Takes ownership of `data` (a JSON object) in every case.
 * The first event a command emits is checked against the command's expected
 * version (If-Match): a mismatch is CLEAVE_ECONFLICT.
 * Errors: CLEAVE_EINVAL (bad stream/type), CLEAVE_ECONFLICT, store errors. */
int cleave_cmd_emit(cleave_cmd *c, const char *stream, const char *type,
		    cJSON *data);
/* Sets the command's result object (the "result" of the answer).  Takes
 * ownership of `result`; a second call replaces the first. */
void cleave_cmd_result(cleave_cmd *c, cJSON *result);
/* Records why the command failed and returns `rc` for the handler to
 * return.  `code` is the machine-readable error code (e.g. "out_of_stock");
 * NULL uses cleave_errname(rc). The message is printf-formatted. */
int cleave_cmd_fail(cleave_cmd *c, int rc, const char *code, const char *fmt,
		    ...) __attribute__((format(printf, 4, 5)));
/* The same with a va_list (messages kept in a table of rules). */
int cleave_cmd_failv(cleave_cmd *c, int rc, const char *code,
		     const char *fmt, va_list ap);
/* The name of the command being handled (one handler may serve several
 * rows of a command table). Static storage: the domain's. */
const char *cleave_cmd_name(const cleave_cmd *c);
/* The command's timestamp (microseconds since the epoch, UTC), fixed when
 * the writer took it: use it instead of the clock so replays agree. */
int64_t cleave_cmd_time_us(const cleave_cmd *c);
/* Current version of a stream in this transaction; 0 if it has no events. */
int cleave_cmd_stream_version(cleave_cmd *c, const char *stream,
			      int64_t *out);

/* ------------------------------------------------------------------------
 * Events as projections see them.
 * ------------------------------------------------------------------------ */
typedef struct cleave_event {
	int64_t position;       /* global, gapless, commit order, from 1 */
	const char *stream;
	int64_t version;        /* per stream, from 1 */
	const char *type;
	int schema_version;     /* as stored */
	const char *data;       /* stored JSON text, NUL-terminated */
	size_t data_len;
	const cJSON *json;      /* data parsed and upcast to the current schema */
	int64_t ts_us;          /* commit-batch time of the command */
	const char *trace_id;   /* metadata; may be NULL */
	const char *command_id;
	const char *idempotency_key;
	const char *causation_id;
} cleave_event;
/* All pointers in a cleave_event are borrowed and valid only during the
 * callback that receives it. */

/* Turns `data` of (type, from_version) into the shape of from_version+1,
 * in place.  Return 0, or a negative code if the event cannot be upcast. */
typedef int (*cleave_upcast_fn)(cJSON *data);
typedef struct cleave_upcaster {
	const char *type;
	int from_version;
	cleave_upcast_fn upcast;
} cleave_upcaster;

/* ------------------------------------------------------------------------
 * Read stores and their transactions.
 *
 * A projection owns one store of one kind; queries read it through a
 * read-only cleave_rtx.  Kinds: "lmdb" (namespaces of keys → bytes, with
 * sorted sets, counters and lists on top) and "sqlite" (tables the
 * projection defines, FTS5 available).  A call a store cannot serve returns
 * CLEAVE_ENOTSUP; a write in a read-only transaction CLEAVE_EREADONLY.
 * Namespaces ("ns") are names of 1 to 32 characters [a-z0-9_]; a
 * projection may use a few dozen (LMDB allows 128 per copy, a sorted set
 * takes two).
 * Keys are NUL-terminated strings of at most CLEAVE_KEY_MAX bytes.
 * A value pointer handed out is valid until the transaction ends.
 * ------------------------------------------------------------------------ */
/* The value at key (borrowed until the transaction ends), or
 * CLEAVE_ENOTFOUND.  Errors of every rtx call: CLEAVE_EINVAL (a bad
 * namespace or key, named in the message), CLEAVE_EREADONLY,
 * CLEAVE_ENOTSUP, and the store's CLEAVE_ENOSPC / CLEAVE_EIO /
 * CLEAVE_ECORRUPT / CLEAVE_ENOMEM — return those from a handler: the
 * engine retries the batch rather than treating the event as poison. */
int cleave_rtx_get(cleave_rtx *tx, const char *ns, const char *key,
		   const void **val, size_t *len);
/* Sets key to a copy of len bytes at val. */
int cleave_rtx_put(cleave_rtx *tx, const char *ns, const char *key,
		   const void *val, size_t len);
/* Deletes key; deleting an absent key succeeds. */
int cleave_rtx_del(cleave_rtx *tx, const char *ns, const char *key);

/* Documents: the JSON value stored at key, parsed once per transaction.
 * cleave_rtx_doc gives the tree (owned by the transaction, valid until it
 * ends) or CLEAVE_ENOTFOUND.  Change it in place and call
 * cleave_rtx_doc_put with the same tree to have it written, or put a new
 * tree (ownership taken; the old one is freed).  Changed documents are
 * written once each, compactly, when the transaction commits — however
 * many events changed them.  Within a transaction, use either these calls
 * or cleave_rtx_get/put for a given key, not both: get does not see
 * changes still in the cache. */
int cleave_rtx_doc(cleave_rtx *tx, const char *ns, const char *key,
		   cJSON **doc); /* CLEAVE_ENOTFOUND */
int cleave_rtx_doc_put(cleave_rtx *tx, const char *ns, const char *key,
		       cJSON *doc);
int cleave_rtx_doc_del(cleave_rtx *tx, const char *ns, const char *key);

/* Deferred writes.  A projection that changes the same rows on many events
 * (a product's stock and sales on every order line) can gather the changes
 * in memory and write each row once per transaction — a rebuild applies
 * thousands of events per transaction.  cleave_rtx_defer registers `flush`
 * under `key` (any address unique to the caller, such as a static's):
 * the engine calls flush(tx, arg) inside the transaction before it
 * commits, and free_fn(arg) (may be NULL) when the transaction ends,
 * committed or not.  cleave_rtx_deferred gives the arg registered under key
 * in this transaction, or NULL.
 *
 * flush must write everything gathered and leave arg empty, ready for
 * more: the engine may call it several times in one transaction.  When a
 * flush fails with a handler error (not a store error) in a batch of many
 * events, the engine finds the event responsible by applying the batch
 * again one event at a time, flushing after each, in a transaction it
 * then abandons; that event is poison as if its handler had failed.
 * Errors: CLEAVE_EINVAL (NULL key or flush, a read-only transaction,
 * key already registered), CLEAVE_ENOMEM (arg is not taken: free it). */
typedef int (*cleave_flush_fn)(cleave_rtx *tx, void *arg);
int cleave_rtx_defer(cleave_rtx *tx, const void *key, cleave_flush_fn flush,
		     void *arg, void (*free_fn)(void *arg));
void *cleave_rtx_deferred(cleave_rtx *tx, const void *key);

/* Visits keys in [from, to) (NULL from = start, NULL to = end) in byte
 * order, or descending with CLEAVE_SCAN_REVERSE, at most `limit` keys (0 =
 * no limit).  The callback returns 0 to go on, 1 to stop, <0 to fail.
 *
 * What a callback may do.  In a projection's write transaction, the
 * callbacks of scan, zrange, counter_scan and list_page may read and write
 * the same store (put, del, doc, list_put, zincr, …): the engine visits
 * pages it gathered first, so no gather-then-write is needed.  A key
 * written or deleted ahead of the scan's position may or may not be
 * visited; the keys behind it never again.  In a query's read
 * transaction nothing can be written.  A callback must not end the
 * transaction, nor start another on the same store. */
#define CLEAVE_SCAN_REVERSE 1
typedef int (*cleave_scan_fn)(void *arg, const char *key, size_t klen,
			      const void *val, size_t vlen);
int cleave_rtx_scan(cleave_rtx *tx, const char *ns, const char *from,
		    const char *to, int flags, size_t limit, cleave_scan_fn fn,
		    void *arg);

/* Sorted sets: members ordered by score descending, ties by member
 * ascending (leaderboards).  zincr creates the member at 0 first; a member
 * whose score becomes 0 stays (use zrem). */
int cleave_rtx_zincr(cleave_rtx *tx, const char *ns, const char *member,
		     int64_t delta, int64_t *score_out);
int cleave_rtx_zscore(cleave_rtx *tx, const char *ns, const char *member,
		      int64_t *out); /* CLEAVE_ENOTFOUND */
int cleave_rtx_zrem(cleave_rtx *tx, const char *ns, const char *member);
typedef int (*cleave_zrange_fn)(void *arg, const char *member, int64_t score);
/* Visits members from rank `offset` (0 = highest), at most `limit`. */
int cleave_rtx_zrange(cleave_rtx *tx, const char *ns, size_t offset,
		      size_t limit, cleave_zrange_fn fn, void *arg);

/* Counters: a key holds `n` int64 fields (n <= 16), all 0 until added to.
 * Keys built from parts with cleave_key() order by parts, so a scan of one
 * country's days is a range. */
#define CLEAVE_COUNTER_MAX 16
int cleave_rtx_counter_add(cleave_rtx *tx, const char *ns, const char *key,
			   const int64_t *delta, int n);
int cleave_rtx_counter_get(cleave_rtx *tx, const char *ns, const char *key,
			   int64_t *out, int n); /* CLEAVE_ENOTFOUND */
typedef int (*cleave_counter_fn)(void *arg, const char *key,
				 const int64_t *vals, int n);
int cleave_rtx_counter_scan(cleave_rtx *tx, const char *ns, const char *from,
			    const char *to, size_t limit, cleave_counter_fn fn,
			    void *arg);

/* Lists: items under a list key ordered by a caller-chosen int64 sequence
 * (a log position is a good one).  put inserts or replaces the item.
 * page visits items newest (highest seq) first, starting below `before`
 * (INT64_MAX for the first page), at most `limit`; use the last seq seen
 * as the next cursor.  Sequences are 0 .. INT64_MAX-1. */
int cleave_rtx_list_put(cleave_rtx *tx, const char *ns, const char *list,
			int64_t seq, const void *val, size_t len);
int cleave_rtx_list_get(cleave_rtx *tx, const char *ns, const char *list,
			int64_t seq, const void **val, size_t *len);
int cleave_rtx_list_del(cleave_rtx *tx, const char *ns, const char *list,
			int64_t seq);
typedef int (*cleave_list_fn)(void *arg, int64_t seq, const void *val,
			      size_t len);
int cleave_rtx_list_page(cleave_rtx *tx, const char *ns, const char *list,
			 int64_t before, size_t limit, cleave_list_fn fn,
			 void *arg);
/* The number of items in list (0 when it has none).  The first len or
 * trim of a list counts its items (a scan); from then on, in a write
 * transaction, put and del keep the count, so len and trim cost no scan
 * (a list never measured costs put and del nothing more).  trim deletes
 * the oldest items (lowest seq) until at most `keep` remain, and says how
 * many went (removed may be NULL): a capped list (the newest 1,000 posts
 * of a timeline) is list_put then list_trim. */
int cleave_rtx_list_len(cleave_rtx *tx, const char *ns, const char *list,
			int64_t *out);
int cleave_rtx_list_trim(cleave_rtx *tx, const char *ns, const char *list,
			 int64_t keep, int64_t *removed);

/* Full-text search, safely: turns a user's text into an FTS5 MATCH
 * expression (into out, reset first) that matches rows holding every word
 * of it as a whole word — words as the store's unicode61 tokenizer (FTS5's
 * default) splits and folds them (case and diacritics) — each word a
 * quoted FTS5 string, so no FTS5 syntax in the text gets through.
 * *nwords (may be NULL) gets the number of words; with none the expression
 * is empty and matches nothing (the caller decides what that answers).
 * More than max_words words is CLEAVE_EINVAL "more than N words"; text that
 * is not UTF-8 CLEAVE_EINVAL.  "sqlite" stores only (else CLEAVE_ENOTSUP).
 * Bind the expression as the MATCH argument. */
int cleave_rtx_fts_query(cleave_rtx *tx, const char *text, int max_words,
			 cleave_buf *out, int *nwords);

/* SQL read stores ("sqlite"): parameterised statements on the projection's
 * own tables.  Statements are prepared once and cached per store.  nargs
 * must be the number of '?' the statement has (else CLEAVE_EINVAL "SQL
 * wants N parameters, M given"), as for cleave_cmd_exec/query. */
int cleave_rtx_exec(cleave_rtx *tx, const char *sql, const cleave_value *args,
		    int nargs, int64_t *changes);
int cleave_rtx_query(cleave_rtx *tx, const char *sql, const cleave_value *args,
		     int nargs, cleave_rows **out);

/* Builds a composite key "a\x1Fb\x1Fc" from `n` parts into buf (size cap).
 * Parts must not contain 0x1F. Returns the length, or CLEAVE_ETOOBIG /
 * CLEAVE_EINVAL. */
int cleave_key(char *buf, size_t cap, int n, const char *const *parts);

/* ------------------------------------------------------------------------
 * Projections.
 * ------------------------------------------------------------------------ */
typedef enum cleave_poison_policy {
	CLEAVE_POISON_PARK = 0, /* stop this projection at the event (default) */
	CLEAVE_POISON_SKIP = 1, /* dead-letter the event and go on */
} cleave_poison_policy;

/* Applies one event inside the projection's read-store transaction.  Return
 * 0, or a negative code: the batch is rolled back, the event is retried with
 * backoff, then the projection's poison policy applies.  Must be a pure
 * function of the store and the event (rebuilds replay it). */
typedef int (*cleave_project_fn)(cleave_rtx *tx, const cleave_event *ev);
/* What a projection's apply returns when one event's work is too big for
 * one transaction (a post fanned out to 100,000 followers' timelines):
 * the engine commits what it wrote so far, with the checkpoint just before
 * the event, and calls apply again with the same event in a new
 * transaction.  The handler keeps its own progress in the store (a
 * cursor it writes with each piece), so a crash between pieces resumes
 * where the last committed piece ended and nothing is applied twice.
 * Between pieces a reader may see part of the event's effects at the
 * previous position; min_position=P still waits for all of them. */
#define CLEAVE_MORE 1
/* Creates the store's tables (SQL stores) on a fresh copy; may be NULL. */
typedef int (*cleave_setup_fn)(cleave_rtx *tx);

typedef struct cleave_projection_def {
	const char *name;               /* [a-z0-9_] */
	int version;                    /* bump to rebuild blue-green */
	const char *store;              /* "lmdb" or "sqlite" */
	const char *const *event_types; /* NULL-terminated; NULL = all */
	cleave_setup_fn setup;
	cleave_project_fn apply;
	cleave_poison_policy on_poison;
} cleave_projection_def;

/* ------------------------------------------------------------------------
 * Queries.
 * ------------------------------------------------------------------------ */
/* Answers a query.  Read params with cleave_query_param*, the projections
 * named in `reads` with cleave_query_rtx (a snapshot each, opened before the
 * handler runs), answer with cleave_query_reply*, fail with
 * cleave_query_fail.  Runs on the caller's thread; must not block. */
typedef int (*cleave_query_fn)(cleave_query *q);

typedef struct cleave_query_def {
	const char *name;
	cleave_query_fn handle;
	const char *const *reads; /* projection names, NULL-terminated */
	const char *summary;
} cleave_query_def;

/* The raw parameter (URL-decoded, valid UTF-8) or NULL when absent.
 * Borrowed; valid during the handler. */
const char *cleave_query_param(cleave_query *q, const char *name);
/* Integer parameter: absent gives `def`; not an integer or outside
 * [min,max] is CLEAVE_EINVAL naming the parameter (already recorded as the
 * query's failure: return the code). */
int cleave_query_param_int(cleave_query *q, const char *name, int64_t def,
			   int64_t min, int64_t max, int64_t *out);
/* String parameter that must be present (required) or may be absent
 * (*out = NULL), at most max_len bytes. CLEAVE_EINVAL as above. */
int cleave_query_param_str(cleave_query *q, const char *name, bool required,
			   size_t max_len, const char **out);
/* An optional boolean parameter: absent → *out = -1; "true"/"1" → 1;
 * "false"/"0" → 0; anything else fails the query with 400
 * invalid_parameter naming it. */
int cleave_query_param_bool(cleave_query *q, const char *name, int *out);
/* A list cursor (a seq the previous page gave): absent → *out = INT64_MAX
 * (the first page); else a decimal 1..INT64_MAX, or the query fails with
 * 400 invalid_cursor naming the parameter. */
int cleave_query_param_cursor(cleave_query *q, const char *name,
			      int64_t *out);

/* A page of a list (cleave_rtx_list_*), newest first, as the answer:
 * {"items": [the stored item texts, which must be JSON], "next_cursor":
 * the seq to pass as cursor for the next page, as a string, or null on the
 * last page — also when it is exactly full}.  Parameters: limit (1 to
 * limit_max, default limit_default) and cursor.  Every name can be
 * changed; zeroes and NULLs take the defaults.  With missing_code, an
 * empty first page is a 404 with that code ("no <what> '<list>'"). */
#define CLEAVE_PAGE_DEFAULT 20
#define CLEAVE_PAGE_MAX 100
typedef struct cleave_page_opts {
	const char *limit_param;  /* "limit" */
	const char *cursor_param; /* "cursor" */
	int64_t limit_default;    /* CLEAVE_PAGE_DEFAULT */
	int64_t limit_max;        /* CLEAVE_PAGE_MAX */
	const char *items_key;    /* "items" */
	const char *next_key;     /* "next_cursor" */
	const char *missing_code; /* NULL: an empty list is an empty page */
	const char *what;         /* "list" */
} cleave_page_opts;
int cleave_query_reply_page(cleave_query *q, cleave_rtx *tx, const char *ns,
			    const char *list, const cleave_page_opts *opts);

/* The name of the query being answered (static storage: the domain's). */
const char *cleave_query_name(const cleave_query *q);
/* The read-only snapshot of reads[i]. Valid during the handler. */
cleave_rtx *cleave_query_rtx(cleave_query *q, int i);
/* Answer with a JSON value (ownership taken).  When it is an object the
 * engine adds "position" first; so an object must not have a top-level
 * "position" of its own.  Every answer is checked before it is served:
 * text that is not JSON (a document a projection stored broken) or an own
 * top-level "position" fails the query with CLEAVE_EINTERNAL, code
 * "invalid_answer" (HTTP 500) naming the query — never a 200 with it. */
int cleave_query_reply(cleave_query *q, cJSON *body);
/* Answer with JSON text copied from `json` (e.g. a stored document); when
 * it is an object the engine splices "position" in. */
int cleave_query_reply_raw(cleave_query *q, const char *json, size_t len);
/* Like cleave_cmd_fail, for queries (CLEAVE_ENOTFOUND → 404, ...). */
int cleave_query_fail(cleave_query *q, int rc, const char *code,
		      const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* ------------------------------------------------------------------------
 * Domains: data, not code paths.  The engine never names a domain's parts.
 * ------------------------------------------------------------------------ */
typedef struct cleave_event_type {
	const char *type;
	int schema_version; /* the version new events are written with */
} cleave_event_type;

struct cleave_domain {
	const char *name;                     /* "shop" */
	const char *const *migrations;        /* write schema, in order;
						 NULL-terminated; portable SQL */
	const cleave_command_def *commands;   /* terminated by {NULL} */
	const cleave_projection_def *projections; /* terminated by {NULL} */
	const cleave_query_def *queries;      /* terminated by {NULL} */
	const cleave_event_type *event_types; /* may be NULL: all version 1 */
	const cleave_upcaster *upcasters;     /* may be NULL; {NULL}-ended */
};

/* ------------------------------------------------------------------------
 * The engine.
 * ------------------------------------------------------------------------ */
typedef enum cleave_durability {
	CLEAVE_DURABILITY_FSYNC = 0, /* ack after fdatasync (default) */
	CLEAVE_DURABILITY_OS = 1,    /* ack after write(); OS crash may lose */
} cleave_durability;

enum { CLEAVE_LOG_DEBUG, CLEAVE_LOG_INFO, CLEAVE_LOG_WARN, CLEAVE_LOG_ERROR };

/* Log sink. Called from engine threads; must be thread-safe. Strings are
 * borrowed for the call; ids may be NULL, position < 0 when none. */
typedef void (*cleave_log_fn)(void *arg, int level, const char *trace_id,
			      const char *command_id, int64_t position,
			      const char *msg);

typedef struct cleave_config {
	const cleave_domain *domain;  /* required */
	const char *data_dir;         /* default "./cleave-data" */
	const char *write_store;      /* NULL/"sqlite": data_dir/write.db;
					 "sqlite:DIR": DIR/write.db (query
					 nodes); "postgres://…": PostgreSQL */
	const char *read_store;       /* NULL/"embedded": LMDB + SQLite
					 under data_dir/read;
					 "redis://HOST[:PORT][/DB][/PREFIX]":
					 key/value ("lmdb") read models in
					 that Redis, SQL ones embedded */
	cleave_durability durability;
	int queue_max;        /* queued commands; 0 → 65536 */
	int batch_max;        /* commands per group commit; 0 → 4096 */
	int apply_batch_max;  /* events per projection transaction; 0 → 8192 */
	int ring_events;      /* committed events kept in memory for runners
				 (and at most ~64 MiB of them); 0 → 65536 */
	bool no_projections;  /* open for writing/inspection, run no runners */
	bool read_only;       /* open the log and stores without writing
				 (CLI on a data directory) */
	bool query_node;      /* serve queries only, beside another engine
				 (the writer) that shares this one's log and
				 Redis read store: read the log without
				 writing (write_store "sqlite:DIR" names the
				 writer's data directory, or the same
				 postgres:// URI), follow the writer's Redis
				 read models, run the SQL ones locally;
				 commands are refused (CLEAVE_EREADONLY).
				 Needs read_store "redis://…". */
	int poison_retries;   /* attempts before the policy; 0 → 3 */
	int poison_backoff_ms;/* first backoff, doubled per retry; 0 → 20 */
	uint64_t lmdb_map_size; /* address space per LMDB copy, bytes; the
				   largest it can grow to; 0 → 64 GiB */
	bool read_sync;       /* fsync every read-model commit.  Off (the
				 default), read models are written without
				 fsync — a process crash loses nothing — and
				 after the machine itself crashed (another boot
				 id, no clean shutdown) every read model is
				 rebuilt from the log at open. */
	cleave_log_fn log;
	void *log_arg;
	const char *advertise_url; /* a writer with a shared read store: the
				      URL clients reach it at, published
				      with its heartbeat so query nodes can
				      name it (421 to commands); NULL: none */
} cleave_config;

/* Opens (creating when absent) the data directory (mode 0700), the write
 * store (running the domain's migrations), the read stores, and starts the
 * writer and the projection runners.
 * Errors: CLEAVE_EINVAL (bad config or domain table), CLEAVE_EIO,
 * CLEAVE_ECORRUPT, CLEAVE_ENOSPC, CLEAVE_ENOMEM. *out is NULL on failure. */
int cleave_engine_open(const cleave_config *cfg, cleave_engine **out);
/* Stops accepting commands (CLEAVE_ESHUTDOWN), commits and completes every
 * queued command, stops the runners after their current batch, closes the
 * stores.  Safe on NULL. */
void cleave_engine_close(cleave_engine *e);
/* Begins the shutdown of cleave_engine_close without waiting: new commands
 * get CLEAVE_ESHUTDOWN.  Thread-safe and async-signal-unsafe. */
void cleave_engine_stop_accepting(cleave_engine *e);
/* The domain the engine was opened with (borrowed, as passed). */
const cleave_domain *cleave_engine_domain(const cleave_engine *e);
/* 0 while the engine can take commands; CLEAVE_EFAILED (with the reason
 * copied into reason[cap]) once the write store failed to make a commit
 * durable: the engine then refuses every command until it is reopened,
 * because what the failed commit left on disk is only known after the
 * store's recovery at the next open.  Queries go on. */
int cleave_engine_health(cleave_engine *e, char *reason, size_t cap);
/* uri with the password of its userinfo ("scheme://user:PASSWORD@…")
 * replaced by "***", into out (cap bytes, NUL-terminated): for logs and
 * messages, which never show a password. */
void cleave_uri_redact(const char *uri, char *out, size_t cap);

/* Readiness: whether this engine can serve what it is for (a load
 * balancer's question).  A query node is not ready when its view of the
 * log head is stale (not read for 5 s), when the writer's heartbeat (in
 * the shared read store, each second) stopped for 5 s, or when its read
 * store cannot be reached; a parked or failing projection makes an
 * engine degraded (a node not ready: it cannot serve that read model).
 * reasons: "; "-separated, "" when none. */
typedef struct cleave_readiness {
	const char *role; /* "writer" or "query_node" (static) */
	bool ready;
	bool degraded;
	char reasons[1024];
	char writer_url[256]; /* a query node: the writer's advertised URL
				 from its heartbeat, "" when unknown */
} cleave_readiness;
void cleave_engine_readiness(cleave_engine *e, cleave_readiness *out);

/* ------------------------------------------------------------------------
 * Submitting commands.
 * ------------------------------------------------------------------------ */
typedef struct cleave_request {
	const char *command;          /* name */
	const char *body;             /* JSON text; need not be NUL-ended */
	size_t body_len;
	const char *idempotency_key;  /* NULL: none */
	const char *trace_id;         /* NULL: the engine makes one */
	const char *causation_id;     /* NULL: none */
	int64_t expected_version;     /* < 0: none (If-Match) */
} cleave_request;

/* What a command came to.  Owned by the engine; valid during the done
 * callback, or until cleave_outcome_free() for cleave_command_run(). */
typedef struct cleave_outcome {
	int rc;               /* 0 or a CLEAVE_E* code */
	int64_t position;     /* of its last event, or the log head; 0 on error */
	const char *body;     /* the whole answer as JSON text (success shape
				 or {"error":{…}}), NUL-terminated */
	size_t body_len;
	const char *trace_id;
	const char *command_id;
	bool replayed;        /* answered from its idempotency key */
	int64_t latency_us;   /* from submit to durable */
} cleave_outcome;

typedef void (*cleave_done_fn)(void *arg, const cleave_outcome *out);

/* Checks the request (name, JSON, fields) on the calling thread and queues
 * it.  On 0, `done` will be called exactly once, from an engine thread,
 * after the command's batch is durable (or failed).  On error `done` is not
 * called.  Errors: CLEAVE_ENOTFOUND (unknown command), CLEAVE_EBADJSON (a
 * body that is not well-formed JSON, or that repeats a key), CLEAVE_EINVAL
 * (well-formed JSON with a missing, unknown or ill-typed field, a value out
 * of range, a bad key or trace id),
 * CLEAVE_EBUSY (queue full), CLEAVE_ESHUTDOWN, CLEAVE_EFAILED (the write
 * store failed; see cleave_engine_health).
 *
 * When a group's commit fails with an I/O error, its commands complete
 * with CLEAVE_EIO and code "commit_unknown": the store may or may not have
 * made it durable (a failed fsync leaves the pages in an unknown state);
 * the engine stops taking commands, and after a restart a retry with the
 * same idempotency key learns the outcome with exactly one effect.  A
 * commit refused for lack of space (CLEAVE_ENOSPC) did not happen and the
 * engine goes on. */
int cleave_command_submit(cleave_engine *e, const cleave_request *req,
			  cleave_done_fn done, void *arg);
/* Submits and waits.  Returns the submit error, or 0 with *out set (check
 * (*out)->rc); free it with cleave_outcome_free(). */
int cleave_command_run(cleave_engine *e, const cleave_request *req,
		       cleave_outcome **out);
/* Frees an outcome of cleave_command_run (never one given to a done
 * callback).  Safe on NULL. */
void cleave_outcome_free(cleave_outcome *o);

/* ------------------------------------------------------------------------
 * Queries.
 * ------------------------------------------------------------------------ */
typedef struct cleave_param {
	const char *name, *value; /* borrowed, NUL-terminated */
} cleave_param;

typedef struct cleave_answer {
	int rc;           /* 0 or CLEAVE_E* */
	int64_t position; /* log position the answer reflects */
	char *body;       /* JSON text (answer or {"error":…}); caller frees
			     with cleave_answer_free */
	size_t body_len;
} cleave_answer;

/* Runs query `name` against the live read models.  Returns 0 with *out
 * filled (check out->rc, which is also the return value of a handler's
 * failure), or CLEAVE_ENOTFOUND (unknown query) / CLEAVE_ENOMEM with
 * nothing to free. */
int cleave_query_run(cleave_engine *e, const char *name,
		     const cleave_param *params, int nparams,
		     cleave_answer *out);
/* 1 when query `name` reads a projection whose store is reached over the
 * network (the Redis read store): its run may block up to the store's
 * timeouts, so a server runs it off the threads that must never wait
 * (commands, health).  0 when every store it reads is embedded;
 * CLEAVE_ENOTFOUND for an unknown query. */
int cleave_query_remote(cleave_engine *e, const char *name);
/* Frees the body of an answer of cleave_query_run.  Safe on NULL. */
void cleave_answer_free(cleave_answer *a);
/* Position that every projection read by query `name` has applied.
 * CLEAVE_ENOTFOUND for an unknown query. */
int cleave_query_position(cleave_engine *e, const char *name, int64_t *out);
/* Why query `name` cannot yet answer at `position`: writes into out (cap
 * bytes, NUL-terminated, "" when nothing holds it back) each projection it
 * reads that is behind position, with its own position and, when it is
 * failing or parked, its state and last error — e.g. "orders at 41
 * (failing: out of memory)".  For the message of a min_position that was
 * not reached in time. */
void cleave_query_lagging(cleave_engine *e, const char *name,
			  int64_t position, char *out, size_t cap);

/* ------------------------------------------------------------------------
 * Live queries: a query answered again when what it read changes.
 *
 * cleave_live_run answers the query like cleave_query_run and notes what
 * its handler read (keys, lists, namespaces scanned, SQL stores).  From
 * then on, when a projection's live copy commits a write to any of them —
 * or switches copies (a blue-green rebuild), or, on a query node, moves —
 * the engine calls fn(arg) once, from one of its threads, after the
 * commit; the next cleave_live_run re-arms it.  Writes to anything else
 * cost the subscription nothing (an event wakes only the subscriptions
 * whose keys it touched).  A wake is a hint, not a promise that the
 * answer changed: compare answers.  fn must not block and must not call
 * cleave_live_*; typically it queues the subscription for a worker.
 * A run that read nothing (its handler failed before reading) is woken
 * by any write to the projections the query reads.
 * ------------------------------------------------------------------------ */
typedef struct cleave_live cleave_live;
typedef void (*cleave_live_fn)(void *arg);
/* Copies name and params.  CLEAVE_ENOTFOUND (unknown query), CLEAVE_ENOMEM. */
int cleave_live_open(cleave_engine *e, const char *name,
		     const cleave_param *params, int nparams,
		     cleave_live_fn fn, void *arg, cleave_live **out);
/* As cleave_query_run, for l's query and params; re-arms the wake-up. */
int cleave_live_run(cleave_live *l, cleave_answer *out);
/* After it returns fn is never called again for l.  Safe on NULL. */
void cleave_live_close(cleave_live *l);
/* Open live queries, and the wake-ups delivered since the engine
 * opened. */
int64_t cleave_live_count(cleave_engine *e);
uint64_t cleave_live_wakes(cleave_engine *e);

/* ------------------------------------------------------------------------
 * Waiting for positions (read-your-writes).
 * ------------------------------------------------------------------------ */
/* Blocks until every projection in `names` (n of them; n == 0 means all)
 * has applied `position`, or `timeout_ms` passes.  Returns 0,
 * CLEAVE_ETIMEDOUT, CLEAVE_EPARKED (a projection is parked before it),
 * CLEAVE_ENOTFOUND (unknown name) or CLEAVE_ESHUTDOWN. */
int cleave_wait_position(cleave_engine *e, const char *const *names, int n,
			 int64_t position, int timeout_ms);

/* Non-blocking variant for servers: calls fn(arg, rc) exactly once, from an
 * engine thread, when the projections read by query `query` reach
 * `position` (rc 0), at the deadline (CLEAVE_ETIMEDOUT), when one of them
 * is parked before it (CLEAVE_EPARKED), or at shutdown (CLEAVE_ESHUTDOWN).
 * fn may run before this call returns.  Returns 0, or CLEAVE_ENOTFOUND,
 * CLEAVE_EBUSY (too many watches: 65536) or CLEAVE_ESHUTDOWN without
 * calling fn. */
typedef void (*cleave_watch_fn)(void *arg, int rc);
int cleave_watch_position(cleave_engine *e, const char *query,
			  int64_t position, int timeout_ms, cleave_watch_fn fn,
			  void *arg);

/* ------------------------------------------------------------------------
 * The log, projections and operations.
 * ------------------------------------------------------------------------ */
/* Position of the last committed event (0 for an empty log). */
int64_t cleave_log_head(cleave_engine *e);

/* Visits events with position > after (and in `stream` when not NULL) in
 * order, at most `limit` (0 = no limit), upcast.  fn returns 0 to go on,
 * 1 to stop, <0 to fail with that code. Reads the write store's log. */
typedef int (*cleave_event_fn)(void *arg, const cleave_event *ev);
int cleave_log_read(cleave_engine *e, int64_t after, const char *stream,
		    size_t limit, cleave_event_fn fn, void *arg);
/* Visits events whose trace id or command id equals `id`. */
int cleave_log_trace(cleave_engine *e, const char *id, cleave_event_fn fn,
		     void *arg);
/* Appends ev as a JSON object: position, stream, version, type,
 * schema_version, data (the stored JSON text), ts_us, trace_id,
 * command_id, and idempotency_key and causation_id when set. */
void cleave_event_json(cleave_buf *b, const cleave_event *ev);
/* At most CLEAVE_TRACE_EVENTS_MAX events of one trace are shown. */
#define CLEAVE_TRACE_EVENTS_MAX 10000
/* Appends to b the trace of `id` (a trace id or a command id) as one JSON
 * object: {"id", "events": [cleave_event_json…], "truncated": more than
 * CLEAVE_TRACE_EVENTS_MAX matched, "commands": [{"command_id",
 * "trace_id", "idempotency_key", "causation_id", "ts_us", "events":
 * [positions], "projections": [fate…]}…], "projections": [fate…]}, the
 * commands in log order of their first event, a projection's fate being
 * {"name", "version", "state", "position", "subscribed" (to any of the
 * events), "needs" (the position it must reach), "applied", "applied_at_us"
 * (null when not recorded: recent positions only, not across restarts)}.
 * Errors: CLEAVE_ENOTFOUND (nothing has that id), CLEAVE_EINVAL (a bad
 * id), CLEAVE_ENOMEM, and the log's read errors. */
int cleave_log_trace_json(cleave_engine *e, const char *id, cleave_buf *b);

typedef enum cleave_proj_state {
	CLEAVE_PROJ_LIVE = 0,
	CLEAVE_PROJ_REBUILDING = 1, /* live copy serves; a new copy builds */
	CLEAVE_PROJ_PARKED = 2,
} cleave_proj_state;
/* "live", "rebuilding" or "parked" (static storage). */
const char *cleave_proj_state_name(cleave_proj_state s);

typedef struct cleave_proj_status {
	const char *name;       /* borrowed from the domain table */
	int version;            /* of the copy that serves queries */
	cleave_proj_state state;
	int64_t position;       /* applied by the serving copy */
	int64_t lag_events;     /* log head - position */
	double lag_seconds;     /* age of the oldest unapplied event, 0 if none */
	double events_per_s;    /* applied recently (10 s window) */
	int64_t applied_total;  /* since open */
	int building_version;   /* when rebuilding: the new copy's version */
	int64_t building_position;
	int64_t parked_position;/* when parked: the failing event */
	int64_t dead_letters;   /* skipped events recorded */
	bool failing;           /* its store refuses writes right now (disk
				   full, I/O error): it lags until that ends */
	char last_error[256];
} cleave_proj_status;

/* Number of projections in the domain. */
int cleave_projection_count(cleave_engine *e);
/* Status of projection i (0 <= i < count); CLEAVE_ENOTFOUND past the
 * end.  Strings in *out are borrowed from the domain or copied into it. */
int cleave_projection_status(cleave_engine *e, int i, cleave_proj_status *out);
/* Index of projection `name`, or CLEAVE_ENOTFOUND. */
int cleave_projection_find(cleave_engine *e, const char *name);
/* Starts a blue-green rebuild of `name` (a new copy from position 0; the
 * live one serves until the new one has caught up, then one atomic switch).
 * CLEAVE_EBUSY if a rebuild of it is already running. */
int cleave_projection_rebuild(cleave_engine *e, const char *name);
/* Resumes a parked projection (retrying the failing event).
 * CLEAVE_EINVAL when it is not parked. */
int cleave_projection_resume(cleave_engine *e, const char *name);
/* Waits until no rebuild of `name` is running (the switch happened), at
 * most timeout_ms.  CLEAVE_ETIMEDOUT, CLEAVE_EPARKED (the new copy parked). */
int cleave_projection_wait_rebuilt(cleave_engine *e, const char *name,
				   int timeout_ms);

/* Verifies projection `name`: builds a scratch copy from the log up to the
 * live copy's position, then compares both key by key.  fn (may be NULL) is
 * called for each difference with what = "missing" (in the rebuild, not
 * live), "extra" (live only) or "different".  *ndiff gets the count,
 * *position the position compared at.  Returns 0 even when they differ. */
/* A difference found by verify: the table (namespace), the key as the
 * domain wrote it (a list item "<list> #<seq>", a sorted-set entry
 * "<member> (score S)"), and what differs ("missing", "extra",
 * "different"). */
typedef int (*cleave_diff_fn)(void *arg, const char *table, const char *key,
			      size_t klen, const char *what);
int cleave_projection_verify(cleave_engine *e, const char *name,
			     cleave_diff_fn fn, void *arg, int64_t *ndiff,
			     int64_t *position);
/* When projection i's serving copy applied `position`: 0 with *when_us
 * (0 when the time is no longer remembered), CLEAVE_ENOTFOUND if it has not
 * applied it yet. */
int cleave_projection_applied_at(cleave_engine *e, int i, int64_t position,
				 int64_t *when_us);

/* Counters for metrics.  Histograms use the bucket bounds given (in
 * microseconds): buckets[i] counts values in (bound[i-1], bound[i]] — not
 * cumulative; an exporter sums them for Prometheus' "le" buckets.  Values
 * above the last bound are in count and sum only. */
#define CLEAVE_HIST_BUCKETS 16
typedef struct cleave_hist {
	uint64_t count;
	uint64_t sum;  /* microseconds (or units) */
	uint64_t buckets[CLEAVE_HIST_BUCKETS]; /* counts <= bound[i] */
} cleave_hist;
extern const uint64_t cleave_hist_bounds_us[CLEAVE_HIST_BUCKETS];
extern const uint64_t cleave_hist_bounds_batch[CLEAVE_HIST_BUCKETS];

typedef struct cleave_command_stats {
	const char *name;  /* borrowed */
	uint64_t ok, rejected, invalid, not_found, conflict, failed, replayed;
	cleave_hist latency_us;
} cleave_command_stats;

typedef struct cleave_stats {
	uint64_t batches, fsyncs, events_appended, commands_total;
	uint64_t queue_depth, queue_max;
	int64_t head;
	bool write_failed;    /* see cleave_engine_health */
	cleave_hist batch_size;
} cleave_stats;

void cleave_stats_get(cleave_engine *e, cleave_stats *out);
/* Stats of command i (domain order); CLEAVE_ENOTFOUND past the end. */
int cleave_command_stats_get(cleave_engine *e, int i,
			     cleave_command_stats *out);

/* Records a value in a histogram (thread-safe, lock-free). */
void cleave_hist_add(cleave_hist *h, const uint64_t *bounds, uint64_t v);
/* Copies a histogram that other threads may be adding to (each field read
 * atomically; fields may be a few values apart). */
void cleave_hist_copy(cleave_hist *out, const cleave_hist *h);

/* ------------------------------------------------------------------------
 * Domains as plugins, and the program.
 *
 * A domain can be a shared object of its own, built against an installed
 * Cleave and loaded by the cleave program at run time:
 *
 *     cc $(pkg-config --cflags --libs cleave) -shared -fPIC \
 *        -o notes.so notes.c
 *     cleave serve --domain ./notes.so
 *
 * The object exports one function, cleave_domain_entry(), which gives the
 * loader its domain table and the CLEAVE_API_VERSION it was compiled with;
 * CLEAVE_DOMAIN_EXPORT(table) defines it.  The loader (dlopen, RTLD_NOW |
 * RTLD_LOCAL) refuses, with a message naming the file and exit status 2,
 * a file that is missing, one that is not a shared object, one that does
 * not export cleave_domain_entry, one built for another API version, and
 * a table that fails cleave_domain_check().  A plugin links libcleave.so
 * and uses the program's copy of it: the engine's state exists once in
 * the process.  It stays loaded until the process exits.
 * ------------------------------------------------------------------------ */

/* The version of this API that a plugin is built for.  It changes when a
 * plugin compiled against an older cleave.h would misbehave with this
 * library (a struct's layout, a callback's arguments); a plugin built for
 * another version is refused before its table is read.  (It can be set
 * with -D only to build such a plugin for a test.) */
#ifndef CLEAVE_API_VERSION
#define CLEAVE_API_VERSION 1
#endif

/* The entry point of a domain plugin, and the one symbol the loader looks
 * up (CLEAVE_DOMAIN_ENTRY).  Sets *api_version to the CLEAVE_API_VERSION
 * the plugin was compiled with and returns its domain table (borrowed: it
 * must live as long as the plugin is loaded, e.g. a static const table).
 * Defined by the plugin (CLEAVE_DOMAIN_EXPORT), never by libcleave. */
const cleave_domain *cleave_domain_entry(int *api_version);
#define CLEAVE_DOMAIN_ENTRY "cleave_domain_entry"

/* Defines cleave_domain_entry() for the cleave_domain `dom`; put it once,
 * at file scope, after the table:
 *
 *     const cleave_domain notes_domain = { .name = "notes", … };
 *     CLEAVE_DOMAIN_EXPORT(notes_domain)
 */
#define CLEAVE_DOMAIN_EXPORT(dom)                                          \
	const cleave_domain *cleave_domain_entry(int *api_version)          \
	{                                                                   \
		*api_version = CLEAVE_API_VERSION;                          \
		return &(dom);                                              \
	}

/* Checks a domain table as cleave_engine_open() does — complete, names
 * and versions well formed, no name twice, known read-store kinds, every
 * query reading a known projection — without opening anything.
 * 0, or CLEAVE_EINVAL with the reason in cleave_errmsg(); CLEAVE_ENOMEM. */
int cleave_domain_check(const cleave_domain *d);

/* The whole cleave program — `cleave serve` and the operator's tools
 * (status, rebuild, verify, events, trace), with their options, --help and
 * exit statuses — for a program that prefers its own main():
 *
 *     int main(int argc, char **argv)
 *     {
 *             static const cleave_domain *const doms[] = {&notes_domain,
 *                                                         NULL};
 *             return cleave_main(argc, argv, doms);
 *     }
 *
 * `domains` are the program's built-in domains, NULL-terminated (NULL: it
 * has none); --domain NAME (or CLEAVE_DOMAIN) picks one of them by its
 * name, and without --domain the first is served.  A --domain value that
 * contains '/' or ends in ".so" loads a plugin instead, in every program.
 * The array and the tables are borrowed for the life of the process; the
 * cleave binary itself is this call with the shop and the bank.
 * argv is as main() got it (argv[1] the subcommand, "serve" when absent).
 * Returns the exit status: 0 success, 1 failure, 2 usage error.  Call it
 * once, from the main thread: it installs signal handlers. */
int cleave_main(int argc, char **argv, const cleave_domain *const *domains);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif /* CLEAVE_H */
