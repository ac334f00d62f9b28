/*
 * replay.c — runs a fuzz target's LLVMFuzzerTestOneInput over files and
 * directories of inputs, without libFuzzer: `make check` replays every
 * committed corpus and regression input in the normal (gcc) and ASan
 * builds.  Usage: replay_<target> PATH...  (a missing PATH is skipped).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "fuzz.h"

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static long run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		exit(1);
	}
	size_t cap = 4096, n = 0;
	unsigned char *buf = malloc(cap);
	size_t k;
	while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
		n += k;
		if (n == cap) {
			unsigned char *p = realloc(buf, cap *= 2);
			if (!p)
				free(buf);
			buf = p;
		}
	}
	fclose(f);
	if (!buf) {
		fprintf(stderr, "%s: out of memory\n", path);
		exit(1);
	}
	/* an exact-size copy, so ASan sees reads past the end */
	unsigned char *in = malloc(n ? n : 1);
	memcpy(in, buf, n);
	free(buf);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	LLVMFuzzerTestOneInput(in, n);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (getenv("REPLAY_VERBOSE"))
		fprintf(stderr, "%8.3f ms  %s\n",
			(double)(t1.tv_sec - t0.tv_sec) * 1e3 +
				(double)(t1.tv_nsec - t0.tv_nsec) / 1e6,
			path);
	free(in);
	return 1;
}

static long run_path(const char *path)
{
	struct stat st;
	if (stat(path, &st))
		return 0;
	if (!S_ISDIR(st.st_mode))
		return run_file(path);
	DIR *d = opendir(path);
	if (!d)
		return 0;
	char **names = NULL;
	size_t nn = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (nn == cap) {
			cap = cap ? cap * 2 : 256;
			names = realloc(names, cap * sizeof(*names));
		}
		size_t len = strlen(path) + strlen(de->d_name) + 2;
		names[nn] = malloc(len);
		snprintf(names[nn], len, "%s/%s", path, de->d_name);
		nn++;
	}
	closedir(d);
	if (nn)
		qsort(names, nn, sizeof(*names), cmp);
	long total = 0;
	for (size_t i = 0; i < nn; i++) {
		total += run_path(names[i]);
		free(names[i]);
	}
	free(names);
	return total;
}

int main(int argc, char **argv)
{
	LLVMFuzzerInitialize(&argc, &argv);
	long total = 0;
	for (int i = 1; i < argc; i++)
		total += run_path(argv[i]);
	printf("replayed %ld inputs\n", total);
	return 0;
}
