/*
 * arena.c — a chunked memory arena: allocations are never moved or freed
 * one by one, only all at once.
 */
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/util.h"

struct cl_arena_chunk {
	cl_arena_chunk *next;
	char data[];
};

void *cl_arena_alloc(cl_arena *a, size_t n)
{
	n = (n + 7) & ~(size_t)7;
	if (!a->head || a->used + n > a->cap) {
		/* 1 KiB first, doubling to 16 KiB: a group of one command
		 * holds a little, one of thousands a lot */
		size_t cap = a->cap ? CL_MIN(a->cap * 2, (size_t)16384) : 1024;
		if (cap < n)
			cap = n;
		cl_arena_chunk *c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->next = a->head;
		a->head = c;
		a->used = 0;
		a->cap = cap;
		a->total += sizeof(*c) + cap;
	}
	void *p = a->head->data + a->used;
	a->used += n;
	return p;
}

char *cl_arena_strdup(cl_arena *a, const char *s, size_t n)
{
	char *p = cl_arena_alloc(a, n + 1);
	if (p) {
		memcpy(p, s, n);
		p[n] = 0;
	}
	return p;
}

void cl_arena_free(cl_arena *a)
{
	for (cl_arena_chunk *c = a->head, *next; c; c = next) {
		next = c->next;
		free(c);
	}
	memset(a, 0, sizeof(*a));
}
