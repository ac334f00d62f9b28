/*
 * main.c — the `cleave` program: the server and the operator's tools of
 * libcleave (cleave_main) with the built-in domains, the shop (the
 * default) and the bank.  Any other domain is a plugin: --domain PATH.so.
 */
#include "cleave.h"
#include "domains.h"

/* Read by jemalloc (the program's allocator, see CMakeLists.txt) at start:
 * a background thread returns freed memory to the system even for arenas
 * no thread allocates from any more (a finished rebuild's reader, say).
 * Unused with any other allocator. */
extern const char *malloc_conf;
const char *malloc_conf = "background_thread:true,dirty_decay_ms:5000";

int main(int argc, char **argv)
{
	return cleave_main(argc, argv, cleave_domains);
}
