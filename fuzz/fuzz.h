/*
 * fuzz.h — what every fuzz target defines (libFuzzer's entry points), so
 * that the targets build with -Wmissing-prototypes and link either with
 * libFuzzer (build-fuzz) or with replay.c (make check).
 */
#ifndef CL_FUZZ_H
#define CL_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A broken invariant: print it and abort, so that libFuzzer keeps the
 * input as a crasher and replay fails. */
#define FUZZ_CHECK(cond)                                                      \
	do {                                                                  \
		if (!(cond))                                                  \
			fuzz_fail(__FILE__, __LINE__, #cond);                 \
	} while (0)
void fuzz_fail(const char *file, int line, const char *what)
	__attribute__((noreturn));

#endif
