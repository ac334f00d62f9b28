/*
 * conns.c — per-connection state: the deadline on slow clients, and the
 * request MHD holds for the connection (released here when MHD forgets
 * it).
 */
#include <stdlib.h>
#include <sys/socket.h>

#include "http.h"
#include "log.h"

/* ---- connection deadlines ------------------------------------------------ */

/* MHD's idle timeout restarts on every byte, so a client trickling its
 * headers a byte at a time would hold a connection forever.  We also give
 * each request a deadline: its headers and body must arrive within
 * --idle-timeout of the connection opening or the previous answer.  A
 * reaper thread shuts down the socket of a request past it; MHD then sees
 * the connection end and cleans up.  MHD calls the CLOSED notification
 * before it closes the descriptor, and both sides hold cmu, so the reaper
 * never touches a descriptor that was closed and reused. */
struct cl_conn {
	cl_conn *prev, *next;
	int fd;
	atomic_bool receiving;
	_Atomic int64_t since_us;
	bool cut;
	cl_req *req; /* see cl_conn_hold; the connection's thread only */
};

/* ---- the request MHD holds ------------------------------------------------
 *
 * MHD 0.9.75 can lose a request: when the query string exhausts the
 * connection's memory pool after our URI callback made its record, MHD
 * queues its own 431, fails to grow the pool again, marks the connection
 * closed, and calls neither the access handler nor the completion
 * callback.  So each connection remembers the record MHD holds, from the
 * URI callback (or the access handler's first call) to the completion
 * callback; whatever is still there when the connection closes, or when
 * the next request on it starts, MHD has forgotten, and we release it as
 * the completion callback would have.  Every MHD callback of a
 * connection runs on that connection's thread, so `req` needs no lock. */

void cl_conn_hold(cl_conn *c, cl_req *r)
{
	if (!c || c->req == r)
		return;
	cl_req *old = c->req;
	c->req = r;
	if (old) {
		cl_logf(CLEAVE_LOG_DEBUG, old->trace_id, NULL, -1,
		        "releasing a request libmicrohttpd dropped");
		old->track = NULL;
		cl_req_drop(old);
	}
}

void cl_conn_release(cl_conn *c, cl_req *r)
{
	if (c && c->req == r)
		c->req = NULL;
}

void cl_conn_receiving(cl_conn *c, bool on)
{
	if (!c)
		return;
	if (on)
		atomic_store(&c->since_us, cl_mono_now_us());
	atomic_store(&c->receiving, on);
}

void cl_conn_notify(void *cls, struct MHD_Connection *conn,
                    void **socket_context,
                    enum MHD_ConnectionNotificationCode toe)
{
	cl_srv *s = cls;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		cl_conn *c = calloc(1, sizeof(*c));
		*socket_context = c;
		if (!c)
			return;
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
		    conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		c->fd = ci ? ci->connect_fd : -1;
		atomic_init(&c->since_us, cl_mono_now_us());
		atomic_init(&c->receiving, true);
		pthread_mutex_lock(&s->cmu);
		c->next = s->conns;
		if (s->conns)
			s->conns->prev = c;
		s->conns = c;
		pthread_mutex_unlock(&s->cmu);
	} else {
		cl_conn *c = *socket_context;
		if (!c)
			return;
		cl_conn_hold(c, NULL);
		pthread_mutex_lock(&s->cmu);
		if (c->prev)
			c->prev->next = c->next;
		else
			s->conns = c->next;
		if (c->next)
			c->next->prev = c->prev;
		pthread_mutex_unlock(&s->cmu);
		free(c);
		*socket_context = NULL;
	}
}

int cl_conns_reap(cl_srv *s)
{
	int n = 0;
	int64_t now = cl_mono_now_us();
	pthread_mutex_lock(&s->cmu);
	for (cl_conn *c = s->conns; c; c = c->next) {
		if (c->cut || c->fd < 0 || !atomic_load(&c->receiving))
			continue;
		if (now - atomic_load(&c->since_us) < s->header_deadline_us)
			continue;
		shutdown(c->fd, SHUT_RDWR);
		c->cut = true;
		n++;
	}
	pthread_mutex_unlock(&s->cmu);
	if (n)
		cl_logf(CLEAVE_LOG_INFO, NULL, NULL, -1,
		        "closed %d connection(s) that sent no complete "
		        "request within the idle timeout (%d s)",
		        n, s->cfg->idle_timeout);
	return n;
}
