/*
 * shopload.h — what the in-process benchmarks share: submitting shop
 * commands to an engine through cleave_command_submit with a bounded
 * window of commands in flight per submitting thread (a closed loop that
 * waits for completions, never spins on CLEAVE_EBUSY), and seeding a data
 * directory with the users, products and promo the workloads use.
 *
 * Ids the workloads rely on (the same in loadgen's scenarios):
 *   users u1..uN (country from a short list), products p1..pN (stock
 *   5e8, categories and names from word lists), "scarce" products
 *   s1..sN (stock 0: a cart holding one fails Checkout with 422), promo
 *   code BENCH10 (10% off, a billion uses, expires in 2100).
 */
#ifndef CL_BENCH_SHOPLOAD_H
#define CL_BENCH_SHOPLOAD_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleave.h"
#include "hist.h"

typedef struct sl_window {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int inflight, window;
	uint64_t completions;
	uint64_t ok, rejected, failed, busy_waits;
	hist lat; /* submit -> durable, from the outcome */
} sl_window;

void sl_window_init(sl_window *w, int window);
/* Submits one command, waiting while `window` commands are in flight and
 * (on CLEAVE_EBUSY) until one of ours completes.  Exits on any other
 * submit error. */
void sl_submit(cleave_engine *e, sl_window *w, const char *cmd,
               const char *body, int len);
/* Waits until none of this window's commands are in flight. */
void sl_drain(sl_window *w);

#define SL_STOCK 500000000 /* opening stock of p1..pN */

/* Product k's name and price as seeded; a user's country. */
void sl_product(int k, bool scarce, char *name, size_t cap, int *price);
const char *sl_country(int user);

/* Writes the seed data through the engine (fast: pipelined). */
void sl_seed(cleave_engine *e, int users, int products, int scarce);

/* Body of the i-th command of the checkout mix on cart `cart` (step 0..3:
 * AddToCart x3 then Checkout). Returns the command name. */
const char *sl_checkout_step(char *body, int cap, int *len, int step,
                             const char *cart, int user, uint32_t *rng,
                             int products, int scarce, bool scarce_cart,
                             bool promo);

uint32_t sl_rnd(uint32_t *s);
uint64_t sl_now_ns(void);
void sl_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
