/*
 * qpool.c — the threads that run queries on a network read store.
 *
 * A query that reads a projection held in Redis (cleave_query_remote) can
 * block for as long as the store's timeouts when Redis hangs.  Run on an
 * HTTP thread, it would hold every connection that thread serves —
 * commands and /health included — so it runs here instead: the HTTP
 * thread suspends the connection and queues the request; a pool thread
 * runs the query and resumes the connection with the answer (the
 * bulkhead: trouble on the read side never slows the write side).
 * Embedded stores answer in microseconds and stay on the HTTP threads.
 *
 * Bounded: --query-threads threads and a queue of 64 per thread; a full
 * queue answers 503 overloaded at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

#define QUEUE_PER_THREAD 64

struct cl_qpool {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	cl_req *head, *tail;
	int n, max;
	bool stop;
	pthread_t th[256];
	int nth;
	bool joined;
};

static void *pool_main(void *arg)
{
	cl_srv *s = arg;
	cl_qpool *p = s->qpool;
	pthread_setname_np(pthread_self(), "cl-query");
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->head && !p->stop)
			pthread_cond_wait(&p->cond, &p->mu);
		if (!p->head)
			break; /* stopping, and nothing left */
		cl_req *r = p->head;
		p->head = r->pnext;
		if (!p->head)
			p->tail = NULL;
		p->n--;
		pthread_mutex_unlock(&p->mu);
		int64_t t0 = cl_mono_now_us();
		r->pool_rc = cleave_query_run(s->e, r->name, r->params,
		                              r->nparams, &r->pool_answer);
		if (r->pool_rc) {
			snprintf(r->pool_msg, sizeof(r->pool_msg), "%s",
			         *cleave_errmsg() ? cleave_errmsg()
			                          : cleave_strerror(r->pool_rc));
			memset(&r->pool_answer, 0, sizeof(r->pool_answer));
		}
		r->pool_us = cl_mono_now_us() - t0;
		if (!cl_req_resume(r, 0)) /* MHD dropped the request */
			cleave_answer_free(&r->pool_answer);
		cl_req_unref(r);
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

int cl_qpool_start(cl_srv *s)
{
	cl_qpool *p = calloc(1, sizeof(*p));
	if (!p)
		return -1;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cond, NULL);
	s->qpool = p;
	int n = s->cfg->query_threads;
	if (n < 1)
		n = 1;
	if (n > 256)
		n = 256;
	p->max = n * QUEUE_PER_THREAD;
	for (int i = 0; i < n; i++) {
		if (pthread_create(&p->th[i], NULL, pool_main, s))
			return -1;
		p->nth++;
	}
	return 0;
}

/* Shutdown, before MHD stops (it must not stop with the pool's requests
 * suspended): takes no more, answers what waits in the queue with
 * "shutting down", lets the queries under way finish (a store's timeout
 * at most) and joins the threads. */
void cl_qpool_close(cl_srv *s)
{
	cl_qpool *p = s->qpool;
	if (!p || p->joined)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	cl_req *q = p->head;
	p->head = p->tail = NULL;
	p->n = 0;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->mu);
	while (q) {
		cl_req *r = q;
		q = r->pnext;
		r->pool_rc = CLEAVE_ESHUTDOWN;
		snprintf(r->pool_msg, sizeof(r->pool_msg), "shutting down");
		memset(&r->pool_answer, 0, sizeof(r->pool_answer));
		cl_req_resume(r, 0);
		cl_req_unref(r);
	}
	for (int i = 0; i < p->nth; i++)
		pthread_join(p->th[i], NULL);
	p->joined = true;
}

void cl_qpool_stop(cl_srv *s)
{
	cl_qpool *p = s->qpool;
	if (!p)
		return;
	cl_qpool_close(s);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cond);
	free(p);
	s->qpool = NULL;
}

enum MHD_Result cl_qpool_submit(cl_req *r, cl_handler_fn then)
{
	cl_srv *s = r->s;
	cl_qpool *p = s->qpool;
	pthread_mutex_lock(&p->mu);
	if (p->stop || p->n >= p->max) {
		int max = p->max, nth = p->nth;
		pthread_mutex_unlock(&p->mu);
		return cl_send_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		                     "overloaded",
		                     "the %d threads that run queries on the "
		                     "network read store are busy and %d "
		                     "queries wait (--query-threads); retry",
		                     nth, max);
	}
	/* suspended before anyone can resume it */
	cl_req_suspend(r, then);
	cl_req_ref(r);
	r->pnext = NULL;
	if (p->tail)
		p->tail->pnext = r;
	else
		p->head = r;
	p->tail = r;
	p->n++;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->mu);
	return MHD_YES;
}
