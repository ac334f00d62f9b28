/*
 * dom.h — what the domain modules share (private to domains/): the domain
 * tables, and small helpers built only on the public API and cJSON.
 *
 * Numbers.  cJSON holds numbers as doubles; cleave_json_print writes every
 * integral one up to 2^53 in plain decimal (cJSON's own printer would use
 * exponent form, "1e+15", which clients may read as floats).  The domains
 * bound every number in commands, events, documents and answers by 2^53,
 * so doubles are exact everywhere: a projection receives the emitted tree
 * itself when the event is still in memory and must see the same values
 * as when it is parsed from the log.  dom_w_int writes any int64 exactly,
 * and the same text as the tree printer up to 2^53.
 */
#ifndef CL_DOM_H
#define CL_DOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleave.h"

extern const cleave_domain dom_shop;
extern const cleave_domain dom_bank;

/* Largest integer a double (and so a JSON reader) holds exactly. */
#define DOM_EXACT_MAX ((int64_t)1 << 53)

/* ---- command handlers --------------------------------------------------- */

/* Fails the command with CLEAVE_ENOMEM and returns the code. */
int dom_oom(cleave_cmd *c);
/* The command's timestamp in unix seconds (floor). */
int64_t dom_now_s(const cleave_cmd *c);
/* Copies a text column of the current row into out (truncated to cap-1
 * bytes, "" for NULL). */
void dom_rows_text(cleave_rows *r, int col, char *out, size_t cap);
/* Emits `data` (owned in every case) on stream "<prefix>-<id>"; `built`
 * false means building it ran out of memory (the command fails 500). */
int dom_emit(cleave_cmd *c, const char *prefix, const char *id,
             const char *type, cJSON *data, bool built);

/* ---- JSON --------------------------------------------------------------- */

/* Adds `v` to `obj` as an exact integer literal.  Returns the item or NULL
 * when out of memory (cJSON_Add* convention: the caller checks once). */
cJSON *dom_add_int(cJSON *obj, const char *name, int64_t v);
/* An exact integer literal item for arrays. */
cJSON *dom_int_item(int64_t v);
/* Prints `v` without spaces into a malloc'd string (free()); NULL on OOM. */
char *dom_print(const cJSON *v, size_t *len);

/* ---- per-batch accumulators -------------------------------------------- */

/* Two int64 values per string id, gathered over a read-store transaction
 * and written by `flush` once per batch (cleave_rtx_defer): for rows or
 * scores that many events change.  Ids keep the order they were first
 * touched in, so flushes write in a repeatable order. */
typedef struct dom_acc dom_acc;
/* The accumulator registered under `key` in tx, created with `flush` on
 * first use.  0 or CLEAVE_ENOMEM / the defer error. */
int dom_acc_get(cleave_rtx *tx, const void *key, cleave_flush_fn flush,
                dom_acc **out);
/* The values of `id` ({0, 0} when new), or NULL when out of memory. */
int64_t *dom_acc_at(dom_acc *a, const char *id);
size_t dom_acc_count(const dom_acc *a);
const char *dom_acc_id(const dom_acc *a, size_t i);
int64_t *dom_acc_vals(dom_acc *a, size_t i);
/* Forgets every id (a flush ends with it). */
void dom_acc_clear(dom_acc *a);


/* ---- query parameters --------------------------------------------------- */

/* Cursors that carry text are hex-encoded so they are opaque and safe in a
 * URL.  encode writes 2*n+1 bytes; decode fails (false) on bad hex or when
 * the text does not fit in cap-1 bytes, and NUL-terminates. */
void dom_hex_encode(const char *s, size_t n, char *out);
bool dom_hex_decode(const char *hex, char *out, size_t cap);

#endif
