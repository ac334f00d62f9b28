/*
 * shopload.c — see shopload.h.
 */
#include "shopload.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void sl_die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "bench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(2);
}

uint64_t sl_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint32_t sl_rnd(uint32_t *s)
{
	uint32_t x = *s;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *s = x;
}

void sl_window_init(sl_window *w, int window)
{
	memset(w, 0, sizeof(*w));
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->window = window;
}

static void on_done(void *arg, const cleave_outcome *o)
{
	sl_window *w = arg;
	pthread_mutex_lock(&w->mu);
	w->inflight--;
	w->completions++;
	if (o->rc == 0)
		w->ok++;
	else if (o->rc == CLEAVE_EREJECTED)
		w->rejected++;
	else
		w->failed++;
	hist_add(&w->lat, (uint64_t)(o->latency_us > 0 ? o->latency_us : 0));
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

void sl_submit(cleave_engine *e, sl_window *w, const char *cmd,
               const char *body, int len)
{
	cleave_request r = {0};
	r.command = cmd;
	r.body = body;
	r.body_len = (size_t)len;
	r.expected_version = -1;
	pthread_mutex_lock(&w->mu);
	while (w->inflight >= w->window)
		pthread_cond_wait(&w->cv, &w->mu);
	w->inflight++;
	pthread_mutex_unlock(&w->mu);
	for (;;) {
		int rc = cleave_command_submit(e, &r, on_done, w);
		if (rc == 0)
			return;
		if (rc != CLEAVE_EBUSY)
			sl_die("submit %s: %s (%s)", cmd, cleave_strerror(rc),
			       cleave_errmsg());
		/* queue full: wait for one of ours to complete (or 1 ms when
		 * none of ours is in flight), then try again */
		pthread_mutex_lock(&w->mu);
		w->busy_waits++;
		uint64_t seen = w->completions;
		if (w->inflight > 1) {
			while (w->completions == seen)
				pthread_cond_wait(&w->cv, &w->mu);
		} else {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&w->cv, &w->mu, &ts);
		}
		pthread_mutex_unlock(&w->mu);
	}
}

void sl_drain(sl_window *w)
{
	pthread_mutex_lock(&w->mu);
	while (w->inflight > 0)
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
}

static const char *const countries[] = {"SE", "DE", "FR", "US", "GB",
                                        "JP", "BR", "IN", "NL", "ES"};
static const char *const categories[] = {"kitchen", "garden", "books",
                                         "toys",    "audio",  "sports",
                                         "office",  "travel"};
static const char *const words[] = {
    "espresso", "grinder", "kettle",  "lamp",   "chair",    "desk",
    "speaker",  "racket",  "tent",    "novel",  "puzzle",   "blender",
    "shovel",   "hose",    "monitor", "pillow", "backpack", "bottle"};
#define NW (sizeof(words) / sizeof(words[0]))

void sl_product(int k, bool scarce, char *name, size_t cap, int *price)
{
	snprintf(name, cap, "%s %s %d", words[k % NW], words[(k / NW) % NW], k);
	*price = 100 + (k * 7919) % 99900;
	(void)scarce;
}

const char *sl_country(int user)
{
	return countries[user % 10];
}

void sl_seed(cleave_engine *e, int users, int products, int scarce)
{
	sl_window w;
	char body[512];
	int n;
	sl_window_init(&w, 4096);
	for (int i = 1; i <= users; i++) {
		n = snprintf(body, sizeof(body),
		             "{\"userId\":\"u%d\",\"name\":\"User %d\","
		             "\"country\":\"%s\"}",
		             i, i, sl_country(i));
		sl_submit(e, &w, "RegisterUser", body, n);
	}
	for (int i = 1; i <= products + scarce; i++) {
		bool sc = i > products;
		int k = sc ? i - products : i;
		char name[96];
		int price;
		sl_product(k, sc, name, sizeof(name), &price);
		n = snprintf(body, sizeof(body),
		             "{\"productId\":\"%s%d\",\"name\":\"%s\","
		             "\"category\":\"%s\",\"price_cents\":%d,"
		             "\"stock\":%d,\"description\":\"a %s for "
		             "benchmarks\"}",
		             sc ? "s" : "p", k, name, categories[k % 8], price,
		             sc ? 0 : SL_STOCK, words[(k * 3) % NW]);
		sl_submit(e, &w, "AddProduct", body, n);
	}
	n = snprintf(body, sizeof(body),
	             "{\"code\":\"BENCH10\",\"percent_off\":10,"
	             "\"max_uses\":1000000000,\"expires_at\":4102444800}");
	sl_submit(e, &w, "CreatePromo", body, n);
	sl_drain(&w);
	if (w.failed || w.rejected)
		fprintf(stderr,
		        "seed: %llu failed, %llu rejected (already seeded?)\n",
		        (unsigned long long)w.failed,
		        (unsigned long long)w.rejected);
}

const char *sl_checkout_step(char *body, int cap, int *len, int step,
                             const char *cart, int user, uint32_t *rng,
                             int products, int scarce, bool scarce_cart,
                             bool promo)
{
	if (step < 3) {
		char product[24];
		if (step == 2 && scarce_cart && scarce > 0)
			snprintf(product, sizeof(product), "s%u",
			         sl_rnd(rng) % (uint32_t)scarce + 1);
		else
			snprintf(product, sizeof(product), "p%u",
			         sl_rnd(rng) % (uint32_t)products + 1);
		*len = snprintf(body, (size_t)cap,
		                "{\"cartId\":\"%s\",\"userId\":\"u%d\","
		                "\"productId\":\"%s\",\"quantity\":%u}",
		                cart, user, product, sl_rnd(rng) % 3 + 1);
		return "AddToCart";
	}
	if (promo)
		*len = snprintf(body, (size_t)cap,
		                "{\"userId\":\"u%d\",\"cartId\":\"%s\","
		                "\"promoCode\":\"BENCH10\"}",
		                user, cart);
	else
		*len = snprintf(body, (size_t)cap,
		                "{\"userId\":\"u%d\",\"cartId\":\"%s\"}", user,
		                cart);
	return "Checkout";
}
