/*
 * http.h — the server's private core: the server, a request's context,
 * the route table, and the helpers handlers answer with.
 *
 * A request's life (see http.c): MHD's URI callback creates its cl_req
 * (with the raw URI), the access handler routes it, collects a body
 * (bounded), then runs the route's handler.  A handler either queues an
 * answer at once or suspends the connection and hands the request to the
 * engine (a command, or a watch for min_position); the engine's callback
 * records the result and resumes the connection, and the access handler
 * runs the handler's continuation (`cont`) to answer.
 *
 * Ownership: a cl_req is reference-counted.  MHD holds one reference
 * until its request-completed callback (or, when MHD drops the request
 * without that callback, until the connection closes: cl_conn_hold); each
 * pending engine callback holds one.  The connection is resumed at most
 * once per suspension: whoever wins the exchange on `resumed` (the
 * engine's callback or the shutdown sweep) resumes it and records the
 * result.
 */
#ifndef CL_SERVER_HTTP_H
#define CL_SERVER_HTTP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <sys/socket.h>

#include <microhttpd.h>

#include "cleave.h"
#include "config.h"
#include "guard.h"

#define CL_MAX_PARAMS      32   /* query-string parameters per request */
#define CL_MAX_PARAM_VALUE 4096 /* bytes of one decoded value */
#define CL_MAX_PARAM_NAME  64
/* An oversized body is read and dropped (so simple clients see the 413)
 * up to this many bytes; a larger one is refused at once, unread. */
#define CL_BODY_DRAIN_MAX (16u << 20)
/* Verify and trace runs at once (inspect.c), and the verify slots: one
 * verify per projection, projections past the last slot share it. */
#define CL_JOBS_MAX     8
#define CL_VERIFY_SLOTS 64

typedef struct cl_srv cl_srv;
typedef struct cl_req cl_req;
typedef struct cl_conn cl_conn;
typedef enum MHD_Result (*cl_handler_fn)(cl_req *r);

/* Methods.  OPTIONS is answered on every route (guard.c); any other
 * method than these is implemented on none (501). */
enum {
	CL_M_GET = 1,
	CL_M_POST = 2,
	CL_M_HEAD = 4,
	CL_M_OPTIONS = 8,
	CL_M_OTHER = 16,
};

/* Route flags. */
enum {
	CL_R_BODY = 1,  /* collect a request body (bounded by --max-body) */
	CL_R_ADMIN = 2, /* needs the token when one is configured */
	CL_R_QUERY = 4, /* needs the token with --auth-queries */
};

typedef struct cl_route {
	unsigned methods;    /* CL_M_* */
	const char *pattern; /* "/projections/{}/rebuild": {} is one segment */
	cl_handler_fn handle;
	unsigned flags;
} cl_route;

/* Finds the route for `path`.  On a match returns it and copies the
 * captured segment (decoded) to cap; every route takes OPTIONS (and HEAD
 * where it takes GET).  When the path matches but not the method, returns
 * NULL with *allow set to the methods it takes (for 405); no path match:
 * NULL with *allow = 0. A captured segment longer than capsz-1 bytes does
 * not match. */
const cl_route *cl_route_find(const char *path, unsigned method, char *cap,
                              size_t capsz, unsigned *allow);

enum cl_phase {
	CL_P_NEW = 0,   /* headers read, not routed yet */
	CL_P_BODY,      /* collecting the body */
	CL_P_SUSPENDED, /* waiting for the engine */
	CL_P_DONE,      /* answer queued */
};

struct cl_req {
	cl_srv *s;
	struct MHD_Connection *conn;
	cl_conn *track; /* the connection's deadline record */
	const cl_route *route;
	unsigned method;
	enum cl_phase phase;
	char *uri;              /* raw request target, owned */
	uintptr_t target_at;    /* where the URI callback saw it in MHD's
	                           buffer (head.c's NUL check), or 0 */
	unsigned allow;         /* methods the path takes when route is NULL */
	const char *method_str; /* as sent (MHD's buffer, this request) */
	const char *path;       /* the path inside uri (origin-form) */
	size_t path_len;        /* its length, up to the '?' */
	const char *qs;         /* raw query string inside uri, or NULL */
	/* the authority of an absolute-form target inside uri, or NULL */
	const char *authority;
	size_t authority_len;
	/* headers the browser-safety checks read (head.c counts them; the
	 * first of each, in MHD's buffer, for this request) */
	const char *host, *origin, *ctype;
	unsigned nhost, norigin, nctype;
	bool cors;         /* an allowed Origin: answers name it (guard.c) */
	bool bad_trace_id; /* X-Trace-Id present and malformed */
	char name[CLEAVE_NAME_MAX + 1]; /* the route's captured segment */
	char trace_id[CLEAVE_TRACE_ID_MAX + 1];
	int64_t t0_us; /* monotonic, when routed */
	bool busy;     /* received whole, being answered */
	bool close;    /* answer with "Connection: close" (bad framing) */
	/* why the request is refused before routing (http.c begin): its
	 * status is 0 when it is not; answered once the body is read */
	struct cl_head_err *early;

	/* body */
	char *body;
	size_t body_len, body_cap, discarded;
	bool body_too_big;

	/* decoded query parameters (point into pbuf) */
	cleave_param params[CL_MAX_PARAMS];
	int nparams;
	char *pbuf;

	/* async */
	atomic_int refs;
	atomic_bool resumed;
	pthread_mutex_t mu; /* orders submit+suspend before the callback */
	cl_handler_fn cont; /* run when resumed */
	int async_rc;

	/* a command's outcome, copied from the writer's callback */
	int out_rc;
	int64_t out_pos;
	char *out_body;
	size_t out_len;
	bool out_replayed;
	bool out_logged; /* the engine logged this failure already */
	char out_cmd_id[CLEAVE_TRACE_ID_MAX + 1];
	char out_code[32]; /* a job's error code when not cleave_errname */

	/* a query waiting for min_position */
	int qindex;
	int64_t min_pos;
	int wait_ms;
	cl_req *wprev, *wnext;
	bool waiting;
	/* a query run by the pool (qpool.c): the network read store */
	bool remote;
	cl_req *pnext;
	int pool_rc;                /* cleave_query_run's return */
	cleave_answer pool_answer;  /* its answer (rc 0) */
	char pool_msg[512];         /* its error (rc != 0) */
	int64_t pool_us;
};

/* Per-command counters the engine cannot see: submits refused on the
 * caller's thread (bad JSON or fields, queue full, shutting down). */
typedef struct cl_cmd_counts {
	atomic_uint_fast64_t invalid, overloaded, shutting_down, misdirected,
	    other;
} cl_cmd_counts;

/* The names and origins a request may come with (guard.c). */
#define CL_HOSTS_MAX (CL_CFG_LIST_MAX + 5)
typedef struct cl_guard {
	char host[CL_HOSTS_MAX][CL_HOST_MAX]; /* guard.h's normal form */
	int nhosts;
	cl_origin origin[CL_CFG_LIST_MAX]; /* --allow-origin */
	int norigins;
	/* the port listened on, for the server's own origin: --listen's
	 * until MHD has bound (port 0: the port it picked) */
	atomic_uint port;
} cl_guard;

struct cl_srv {
	const cl_server_config *cfg;
	cleave_engine *e;
	const cleave_domain *dom;
	struct MHD_Daemon *d;
	unsigned port;
	atomic_bool stopping;
	cl_guard guard;

	/* metrics */
	atomic_uint_fast64_t http_codes[600];
	int nqueries, ncmds;
	cleave_hist *qhist; /* per query, latency in µs */
	cl_cmd_counts *cmd_counts;

	/* shutdown accounting */
	atomic_int inflight_cmds; /* submitted, callback not yet run */
	atomic_int live_reqs;     /* cl_req alive on the MHD side */
	atomic_int busy_reqs;     /* of those, received whole (shutdown
	                             waits for these, not for requests
	                             still arriving) */

	/* queries waiting for a position (the shutdown sweep answers them) */
	pthread_mutex_t wmu;
	cl_req *waiters;
	bool waiters_closed;

	/* verify and trace runs (inspect.c); shutdown waits for them */
	atomic_int jobs;
	atomic_bool verifying[CL_VERIFY_SLOTS];

	/* connection deadlines (slow clients) */
	pthread_mutex_t cmu;
	cl_conn *conns;
	int64_t header_deadline_us;
	/* server-sent event streams (sse.c, private) */
	struct cl_sse_hub *sse;
	/* the threads that run queries on a network read store (qpool.c) */
	struct cl_qpool *qpool;
};

/* ---- answering (http.c) ----------------------------------------------- */

/* A response over `body` (len bytes).  own: MHD frees it with free().
 * Adds Content-Type when ctype is not NULL. NULL when out of memory. */
struct MHD_Response *cl_resp(const char *ctype, char *body, size_t len,
                             bool own);
/* Queues `resp` (destroying our reference), counts the status, adds
 * "Connection: close" while shutting down, logs 5xx. */
enum MHD_Result cl_send(cl_req *r, unsigned status, struct MHD_Response *resp);
/* Queues a JSON body copied from... owned text (own=true) with status. */
enum MHD_Result cl_send_json(cl_req *r, unsigned status, char *body,
                             size_t len);
/* Queues {"error":{"code","message"}} with status; the message is
 * printf-formatted. Adds Retry-After: 1 to 503s. */
enum MHD_Result cl_send_error(cl_req *r, unsigned status, const char *code,
                              const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The same, with X-Cleave-Position: pos (pos >= 0). */
enum MHD_Result cl_send_error_pos(cl_req *r, unsigned status, const char *code,
                                  int64_t pos, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* A response carrying {"error":…}; for handlers that add headers. */
struct MHD_Response *cl_error_resp(const char *code, const char *msg);

/* HTTP status for a CLEAVE_E* code (0 → 200). */
unsigned cl_status_of(int rc);

const char *cl_header(cl_req *r, const char *name);
int64_t cl_mono_now_us(void);

/* Writes the methods of `allow` (CL_M_*) as an Allow header's value:
 * "GET, HEAD", "POST"; with options, ", OPTIONS" after them. */
void cl_allow_list(unsigned allow, bool options, char *out, size_t n);

/* Percent-decodes s[0..n) in place ('+' → ' ' when plus), NUL-ends it;
 * returns the new length, or -1 on a bad escape or an encoded NUL. */
long cl_pct_decode(char *s, size_t n, bool plus);

/* ---- the request head (head.c) ----------------------------------------- */

/* Why a request head was refused: status, error code, message, and
 * whether the connection must close after the answer. */
struct cl_head_err {
	unsigned status;
	const char *code;
	char msg[256];
	bool close;
};
typedef struct cl_head_err cl_head_err;

/* Checks r's head on the access handler's first call (method, url and
 * version as MHD passed them): the framing headers (both
 * Transfer-Encoding and Content-Length, either twice, a coding other than
 * chunked, Transfer-Encoding in HTTP/1.0, a name that is not a token →
 * 400 and close), NUL bytes in the target or a header value and folded
 * headers (400 and close), and --max-header (431).  False with *err
 * filled when refused.  Also counts r's Host, Origin and Content-Type
 * headers for the browser-safety checks (r->host…). */
bool cl_head_check(cl_req *r, const char *method, const char *url,
                   const char *version, cl_head_err *err);

/* ---- browser safety (guard.c) ------------------------------------------ */

/* Builds the names and origins s answers to from its config and the
 * address it will listen on (sa), before MHD starts. */
void cl_guard_init(cl_srv *s, const struct sockaddr *sa);
/* The checks after routing, before the token: Host (400 when an HTTP/1.1
 * request has none, or any request several; 403 forbidden_host when it
 * is not one of this server's names), Origin (403 forbidden_origin),
 * Content-Type (415).  r->authority, when set, is checked instead of
 * Host's value.  False with *e filled when refused; sets r->cors when the
 * request carries an allowed Origin. */
bool cl_guard_check(cl_req *r, bool http11, cl_head_err *e);
/* Adds the CORS headers of an allowed Origin to an answer (cl_send). */
void cl_guard_headers(cl_req *r, struct MHD_Response *resp);
/* OPTIONS on a route (or "*"): 204 with Allow, and a CORS preflight's
 * answer when the Origin is allowed. */
enum MHD_Result cl_h_options(cl_req *r);

/* ---- connections (conns.c) -------------------------------------------- */

/* MHD_OPTION_NOTIFY_CONNECTION: tracks each connection's deadline. */
void cl_conn_notify(void *cls, struct MHD_Connection *conn,
                    void **socket_context,
                    enum MHD_ConnectionNotificationCode toe);
/* The request MHD holds for connection c, from the URI callback to the
 * completion callback (r NULL: none).  A request still held when another
 * replaces it, or when the connection closes, was dropped by MHD without
 * its completion callback, and is released (cl_req_drop).  Both safe on a
 * NULL c; connection thread only. */
void cl_conn_hold(cl_conn *c, cl_req *r);
/* Clears c's request if it is r (its completion callback ran). */
void cl_conn_release(cl_conn *c, cl_req *r);
/* on: a request is arriving (its deadline starts now); off: received. */
void cl_conn_receiving(cl_conn *c, bool on);
/* Cuts connections past their deadline; returns how many. */
int cl_conns_reap(cl_srv *s);

/* ---- the daemon (http.c) ---------------------------------------------- */

/* Starts MHD on sa; sets s->d and s->port. -1 on failure (logged by MHD). */
int cl_http_start(cl_srv *s, const struct sockaddr *sa, bool ipv6);
/* Answers every waiting query 503 and lets no new one wait (shutdown). */
void cl_waiters_close(cl_srv *s);

/* Reference counting of requests. */
void cl_req_ref(cl_req *r);
void cl_req_unref(cl_req *r);
/* Gives up MHD's reference to r (what the completion callback does): no
 * engine callback will resume it any more. */
void cl_req_drop(cl_req *r);
/* Resumes r's suspended connection with result rc (r->async_rc), unless
 * someone already did (see the header comment).  True when this call
 * resumed it.  Any thread. */
bool cl_req_resume(cl_req *r, int rc);
/* Marks r suspended with continuation `cont` and suspends its
 * connection. Call from the access handler. */
void cl_req_suspend(cl_req *r, cl_handler_fn cont);

/* Parses r->qs strictly into r->params (percent-escapes, '+' as space,
 * valid UTF-8, no NUL, at most CL_MAX_PARAMS, no duplicates).  On error
 * queues a 400 and returns false with *ret set. */
bool cl_parse_params(cl_req *r, enum MHD_Result *ret);
/* The decoded value of parameter `name`, or NULL. */
const char *cl_param(cl_req *r, const char *name);
/* Removes parameter `name` from r->params (server-side parameters such as
 * min_position are not passed to queries). */
void cl_param_drop(cl_req *r, const char *name);
/* Integer parameter in [min,max]; absent → def.  Malformed → queues 400
 * naming it and returns false. */
bool cl_param_int(cl_req *r, const char *name, int64_t def, int64_t min,
                  int64_t max, int64_t *out, enum MHD_Result *ret);

/* Waiting-query registry (shutdown sweep). Returns false when shutting
 * down (nothing registered). */
bool cl_waiter_add(cl_srv *s, cl_req *r);
void cl_waiter_del(cl_srv *s, cl_req *r);

/* ---- handlers --------------------------------------------------------- */

enum MHD_Result cl_h_command(cl_req *r);
enum MHD_Result cl_h_query(cl_req *r);
enum MHD_Result cl_h_events(cl_req *r);
enum MHD_Result cl_h_projections(cl_req *r);
enum MHD_Result cl_h_rebuild(cl_req *r);
enum MHD_Result cl_h_resume(cl_req *r);
enum MHD_Result cl_h_verify(cl_req *r);
enum MHD_Result cl_h_trace(cl_req *r);
enum MHD_Result cl_h_metrics(cl_req *r);
enum MHD_Result cl_h_health(cl_req *r);
/* ui.c: the operator's dashboard (GET /ui) and its files (GET /ui/NAME);
 * sse.c: the dashboard's stream of figures (GET /ui/stream). */
enum MHD_Result cl_h_ui(cl_req *r);
enum MHD_Result cl_h_ui_file(cl_req *r);
enum MHD_Result cl_h_ui_stream(cl_req *r);

/* ---- queries on a network read store (qpool.c) ------------------------- */

typedef struct cl_qpool cl_qpool;
int cl_qpool_start(cl_srv *s);
/* Shutdown, before MHD stops: answers what is queued "shutting down",
 * lets what runs finish, joins the threads; submits are 503 from then. */
void cl_qpool_close(cl_srv *s);
/* After MHD stopped: frees the pool (closing it first if need be). */
void cl_qpool_stop(cl_srv *s);
/* Suspends r and queues its query (r->name, r->params) for a pool
 * thread, which fills r->pool_rc, r->pool_answer (or r->pool_msg) and
 * resumes r into `then`; or answers 503 when the queue is full. */
enum MHD_Result cl_qpool_submit(cl_req *r, cl_handler_fn then);

/* ---- server-sent event streams (sse.c) --------------------------------- */

typedef struct cl_sse_hub cl_sse_hub;
/* Starts the live workers and the timer (before MHD); -1 on failure. */
int cl_sse_start(cl_srv *s);
/* Shutdown: ends every stream (their connections complete) and admits no
 * new one. */
void cl_sse_close_all(cl_srv *s);
/* After MHD stopped: joins the threads (the hub stays: the engine's
 * watches may still call back until it closes); cl_sse_free after the
 * engine closed. */
void cl_sse_stop(cl_srv *s);
void cl_sse_free(cl_srv *s);
/* r is a GET that asks for text/event-stream. */
bool cl_wants_sse(cl_req *r);
/* GET /queries/<name> as a live stream (queries.c hands it over once the
 * parameters, min_position and wait_ms are read). */
enum MHD_Result cl_h_query_live(cl_req *r);
/* Starts the stream once its first run (the check that its parameters
 * are good) gave rc, a (rc 0) or msg: run on the HTTP thread, or on the
 * pool for a network store. */
enum MHD_Result cl_h_query_live_checked(cl_req *r, int rc, cleave_answer *a,
                                        const char *msg);
/* The streams' figures for /metrics. */
void cl_sse_metrics(cl_srv *s, cleave_buf *b);
/* metrics.c: one histogram of microseconds, in seconds, with its HELP. */
void cl_metrics_hist(cleave_buf *b, const char *name, const char *help,
                     const cleave_hist *h);
/* admin.c: a projection's status as GET /projections lists it. */
void cl_proj_status_json(cleave_buf *b, const cleave_proj_status *st);

/* Query index of `name` in the domain, or -1. */
int cl_query_index(cl_srv *s, const char *name);

#endif
