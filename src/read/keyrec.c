/*
 * keyrec.c — tokens of what a transaction read or wrote (keyrec.h).
 */
#include "read/keyrec.h"

#include <stdlib.h>
#include <string.h>

static uint64_t mix(uint64_t h, const char *s)
{
	for (; s && *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	h ^= 0xff; /* ends the field: ("ab","c") is not ("a","bc") */
	return h * 1099511628211ULL;
}

uint64_t cl_tok(int proj, int kind, const char *ns, const char *key)
{
	/* each field is multiplied in on its own: (proj 0, 'P') and (proj 3,
	 * 'S') must not meet as 0 ^ 'P' == 3 ^ 'S' would */
	uint64_t h = 1469598103934665603ULL;
	for (int i = 0; i < 4; i++) {
		h ^= ((uint32_t)proj >> (8 * i)) & 0xff;
		h *= 1099511628211ULL;
	}
	h = (h ^ (uint64_t)(unsigned char)kind) * 1099511628211ULL;
	h = mix(h, ns);
	h = mix(h, key);
	/* splitmix64's finalizer: the table takes the low bits */
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	return h ^ (h >> 31);
}

void cl_keyrec_reset(cl_keyrec *r)
{
	r->n = 0;
	r->all = false;
}

void cl_keyrec_free(cl_keyrec *r)
{
	free(r->tok);
	memset(r, 0, sizeof(*r));
}

void cl_keyrec_add(cl_keyrec *r, uint64_t tok)
{
	if (r->all)
		return;
	/* the last few repeat often (a document read, then written) */
	for (size_t i = r->n, k = 0; i > 0 && k < 4; i--, k++)
		if (r->tok[i - 1] == tok)
			return;
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 16;
		uint64_t *t = NULL;
		if (cap <= CL_KEYREC_MAX)
			t = realloc(r->tok, cap * sizeof(*t));
		if (!t) {
			r->all = true;
			return;
		}
		r->tok = t;
		r->cap = cap;
	}
	r->tok[r->n++] = tok;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

void cl_keyrec_finish(cl_keyrec *r)
{
	if (r->n < 2)
		return;
	qsort(r->tok, r->n, sizeof(*r->tok), cmp_u64);
	size_t j = 1;
	for (size_t i = 1; i < r->n; i++)
		if (r->tok[i] != r->tok[j - 1])
			r->tok[j++] = r->tok[i];
	r->n = j;
}

void cl_rec_read(cleave_rtx *tx, int kind, const char *ns, const char *key)
{
	/* what a projection's handler only reads does not change: the
	 * batch's tokens are what it writes */
	if (tx->write)
		return;
	cl_keyrec_add(tx->rec, cl_tok(tx->rec_proj, kind, ns, key));
}

void cl_rec_write(cleave_rtx *tx, int kind, const char *ns, const char *key)
{
	cl_keyrec *r = tx->rec;
	cl_keyrec_add(r, cl_tok(tx->rec_proj, kind, ns, key));
	cl_keyrec_add(r, cl_tok(tx->rec_proj, CL_TOK_NS, ns, NULL));
	cl_keyrec_add(r, cl_tok(tx->rec_proj, CL_TOK_STORE, NULL, NULL));
}

void cl_rec_write_all(cleave_rtx *tx)
{
	tx->rec->all = true;
}
