/*
 * arena.h — a chunked memory arena whose pointers stay put (arena.c), and
 * cJSON trees parsed into one (json_arena.c).
 */
#ifndef CL_ARENA_H
#define CL_ARENA_H

#include <stddef.h>

#include "cleave.h"

typedef struct cl_arena_chunk cl_arena_chunk;
typedef struct cl_arena {
	cl_arena_chunk *head;
	size_t used, cap;
	size_t total; /* bytes of all its chunks: what it holds in memory */
} cl_arena;

void *cl_arena_alloc(cl_arena *a, size_t n);
char *cl_arena_strdup(cl_arena *a, const char *s, size_t n);
void cl_arena_free(cl_arena *a);

/* A cJSON tree whose nodes live in `a` (freed with the arena, never with
 * cJSON_Delete); NULL when the text is not JSON it understands. */
cJSON *cl_json_parse_arena(const char *s, size_t n, cl_arena *a);

#endif
