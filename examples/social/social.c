/*
 * social.c — a social network on Cleave (users, follows, posts, likes;
 * timelines, trending, search) built against an installed Cleave, served as
 * a plugin.  README.md has the contract and the design: commands are data,
 * one read model (SQLite, FTS5) answers every query from one snapshot, and
 * the timeline is merged at read time (fan-out on read), exact, with Post's
 * cost independent of the author's followers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cleave.h>

#define ID_MAX  64     /* bytes of [A-Za-z0-9_.:-] */
#define TL_MAX  "1000" /* the newest eligible posts a timeline reaches */
#define Q_WORDS 10     /* words of a search, at most */
#define Q_BYTES 2048   /* bytes of a search, at most */

static const char *const migrations[] = {
    "CREATE TABLE users (user_id TEXT PRIMARY KEY, name TEXT NOT NULL,"
    " created_at BIGINT NOT NULL);"
    "CREATE TABLE follows (follower_id TEXT NOT NULL, followee_id TEXT NOT"
    " NULL, PRIMARY KEY (follower_id, followee_id));"
    "CREATE TABLE posts (post_id TEXT PRIMARY KEY, user_id TEXT NOT NULL,"
    " deleted INTEGER NOT NULL, created_at BIGINT NOT NULL);"
    "CREATE TABLE likes (post_id TEXT NOT NULL, user_id TEXT NOT NULL,"
    " PRIMARY KEY (post_id, user_id));",
    NULL};

/* ---- commands ------------------------------------------------------------ */

/* A rule is broken when its column of the check row is NULL or 0 (false);
 * its message is printf'd with the command's fields number a and b. */
typedef struct rule {
	int rc;
	const char *code, *fmt;
	int a, b;
} rule;

/* A command: `check` returns one row that answers its rules in order, then
 * `write` runs; their '?' take the fields numbered by the digits of
 * check_args and write_args (by the field table; 't' is now, in unix
 * seconds).  The event, on stream "<stream>-<first field>", carries the
 * fields and created_at; so does the command's result. */
typedef struct spec {
	const cleave_field *fields;
	const char *check, *check_args;
	rule rules[5];
	const char *write, *write_args, *stream, *event;
} spec;

#define ID(n)  {n, CLEAVE_F_STRING, true, 0, 0, ID_MAX, "id"}
#define TEXT(n, max) {n, CLEAVE_F_STRING, true, 0, 0, 4 * (max), NULL}
#define R(rc, code, fmt, a, b) {CLEAVE_##rc, code, fmt, a, b}
/* code points, as SQL's length() counts them */
#define CHARS(f, max) R(EINVAL, "invalid_argument", \
	"field '" f "' must be 1 to " #max " characters", 0, 0)
#define NO_USER(i) R(ENOTFOUND, "user_not_found", "no user '%s'", i, i)
#define NO_POST    R(ENOTFOUND, "post_not_found", "no post '%s'", 0, 0)
#define USER       "(SELECT 1 FROM users WHERE user_id = ?)"
#define LIVE_POST  "(SELECT 1 FROM posts WHERE post_id = ? AND deleted = 0)"
#define FOLLOWS    "EXISTS (SELECT 1 FROM follows WHERE follower_id = ?" \
		   " AND followee_id = ?)"

static const cleave_field user_f[] = {ID("userId"), TEXT("name", 100), {0}};
static const cleave_field follow_f[] = {ID("followerId"), ID("followeeId"),
					{0}};
static const cleave_field post_f[] = {ID("postId"), ID("userId"),
				      TEXT("text", 280), {0}};
static const cleave_field act_f[] = {ID("postId"), ID("userId"), {0}};

static const spec specs[] = {
    /* RegisterUser */
    {user_f, "SELECT length(CAST(? AS TEXT)) <= 100, NOT EXISTS " USER, "10",
     {CHARS("name", 100),
      R(EEXIST, "user_exists", "user '%s' already exists", 0, 0)},
     "INSERT INTO users VALUES (?, ?, ?)", "01t", "user", "UserRegistered"},
    /* Follow */
    {follow_f, "SELECT " USER ", " USER ", CAST(? AS TEXT) <> CAST(? AS TEXT),"
     " NOT " FOLLOWS, "010101",
     {NO_USER(0), NO_USER(1),
      R(EREJECTED, "cannot_follow_self", "'%s' cannot follow oneself", 0, 0),
      R(EEXIST, "already_following", "'%s' already follows '%s'", 0, 1)},
     "INSERT INTO follows VALUES (?, ?)", "01", "user", "Followed"},
    /* Unfollow */
    {follow_f, "SELECT " USER ", " USER ", " FOLLOWS, "0101",
     {NO_USER(0), NO_USER(1),
      R(EREJECTED, "not_following", "'%s' does not follow '%s'", 0, 1)},
     "DELETE FROM follows WHERE follower_id = ? AND followee_id = ?", "01",
     "user", "Unfollowed"},
    /* Post */
    {post_f, "SELECT length(CAST(? AS TEXT)) <= 280, " USER ", NOT EXISTS"
     " (SELECT 1 FROM posts WHERE post_id = ?)", "210",
     {CHARS("text", 280), NO_USER(1),
      R(EEXIST, "post_exists", "post '%s' already exists", 0, 0)},
     "INSERT INTO posts VALUES (?, ?, 0, ?)", "01t", "post", "PostPublished"},
    /* Like */
    {act_f, "SELECT " LIVE_POST ", " USER ", NOT EXISTS (SELECT 1 FROM likes"
     " WHERE post_id = ? AND user_id = ?)", "0101",
     {NO_POST, NO_USER(1),
      R(EEXIST, "already_liked", "post '%s' is already liked by '%s'", 0, 1)},
     "INSERT INTO likes VALUES (?, ?)", "01", "post", "PostLiked"},
    /* DeletePost */
    {act_f, "SELECT " LIVE_POST ", " USER ", EXISTS (SELECT 1 FROM posts"
     " WHERE post_id = ? AND user_id = ?)", "0101",
     {NO_POST, NO_USER(1),
      R(EREJECTED, "not_author", "post '%s' is not by '%s'", 0, 1)},
     "UPDATE posts SET deleted = 1 WHERE post_id = ?", "0", "post",
     "PostDeleted"},
};

static int bind(const char *args, const char *const *v, long long now,
		cleave_value *a)
{
	int n = 0;
	for (; args[n]; n++)
		a[n] = args[n] == 't' ? cleave_int(now)
				      : cleave_text(v[args[n] - '0']);
	return n;
}

static int run(cleave_cmd *c, const cJSON *in, const spec *s)
{
	long long now = cleave_cmd_time_us(c) / 1000000;
	const char *v[3] = {NULL};
	const rule *broken = NULL;
	char stream[8 + ID_MAX];
	cleave_value a[8];
	cleave_rows *r;
	int i, rc;
	for (i = 0; s->fields[i].name; i++)
		v[i] = cleave_json_str(in, s->fields[i].name);
	rc = cleave_cmd_query(c, s->check, a, bind(s->check_args, v, now, a),
			      &r);
	if (rc)
		return rc;
	if ((rc = cleave_rows_next(r)) == 1)
		for (i = 0; !broken && s->rules[i].code; i++)
			if (cleave_rows_is_null(r, i) || !cleave_rows_int(r, i))
				broken = &s->rules[i];
	cleave_rows_close(r);
	if (broken)
		return cleave_cmd_fail(c, broken->rc, broken->code, broken->fmt,
				       v[broken->a], v[broken->b]);
	if (rc < 0 || (rc = cleave_cmd_exec(c, s->write, a,
					    bind(s->write_args, v, now, a),
					    NULL)))
		return rc;
	cJSON *d = cJSON_Duplicate(in, true);
	if (!d || !cJSON_AddNumberToObject(d, "created_at", (double)now)) {
		cJSON_Delete(d);
		return cleave_cmd_fail(c, CLEAVE_ENOMEM, NULL, "out of memory");
	}
	cleave_cmd_result(c, cJSON_Duplicate(d, true));
	snprintf(stream, sizeof(stream), "%s-%s", s->stream, v[0]);
	return cleave_cmd_emit(c, stream, s->event, d);
}

#define HANDLER(f, i)                                                        \
	static int f(cleave_cmd *c, const cJSON *in)                         \
	{                                                                    \
		return run(c, in, &specs[i]);                                \
	}
HANDLER(register_user, 0)
HANDLER(follow, 1)
HANDLER(unfollow, 2)
HANDLER(post, 3)
HANDLER(like, 4)
HANDLER(delete_post, 5)

static const cleave_command_def commands[] = {
    {"RegisterUser", register_user, user_f, "a new user (userId, name)"},
    {"Follow", follow, follow_f, "followerId follows followeeId"},
    {"Unfollow", unfollow, follow_f, "followerId stops following followeeId"},
    {"Post", post, post_f, "a new post (postId, userId, text)"},
    {"Like", like, act_f, "userId likes postId, once"},
    {"DeletePost", delete_post, act_f, "its author deletes a post"},
    {0}};

/* ---- the read model: each event is statements on its tables -------------- */

static const char *const tables[] = {
    "CREATE TABLE IF NOT EXISTS users (user_id TEXT PRIMARY KEY, name TEXT,"
    " followers INTEGER DEFAULT 0, following INTEGER DEFAULT 0,"
    " posts INTEGER DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS follows (follower TEXT, followee TEXT,"
    " PRIMARY KEY (follower, followee)) WITHOUT ROWID",
    /* live posts; seq: PostPublished's position; item: as answered */
    "CREATE TABLE IF NOT EXISTS posts (seq INTEGER PRIMARY KEY,"
    " post_id TEXT UNIQUE, author TEXT, item TEXT, likes INTEGER DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS posts_by_author ON posts (author, seq)",
    "CREATE INDEX IF NOT EXISTS posts_by_likes ON posts (likes DESC, post_id)"
    " WHERE likes > 0",
    "CREATE VIRTUAL TABLE IF NOT EXISTS posts_fts USING fts5(text)", NULL};

static int setup(cleave_rtx *tx)
{
	int rc = 0;
	for (int i = 0; !rc && tables[i]; i++)
		rc = cleave_rtx_exec(tx, tables[i], NULL, 0, NULL);
	return rc;
}

/* What an event does: statements that change one row each, their ?N the
 * event's members named in args ("#": the event's position). */
typedef struct effect {
	const char *type, *sql, *args[5];
} effect;

#define COUNT(col, op, who)                                                  \
	"UPDATE users SET " col " = " col op "1 WHERE user_id = ?", {who}
static const effect effects[] = {
    {"UserRegistered", "INSERT INTO users (user_id, name) VALUES (?, ?)",
     {"userId", "name"}},
    {"Followed", "INSERT INTO follows VALUES (?, ?)",
     {"followerId", "followeeId"}},
    {"Followed", COUNT("following", "+", "followerId")},
    {"Followed", COUNT("followers", "+", "followeeId")},
    {"Unfollowed", "DELETE FROM follows WHERE follower = ? AND followee = ?",
     {"followerId", "followeeId"}},
    {"Unfollowed", COUNT("following", "-", "followerId")},
    {"Unfollowed", COUNT("followers", "-", "followeeId")},
    {"PostPublished", "INSERT INTO posts (seq, post_id, author, item) SELECT"
     " ?1, ?2, ?3, json_object('postId', ?2, 'userId', ?3, 'name', name,"
     " 'text', ?4, 'created_at', ?5) FROM users WHERE user_id = ?3",
     {"#", "postId", "userId", "text", "created_at"}},
    {"PostPublished", "INSERT INTO posts_fts (rowid, text) VALUES (?, ?)",
     {"#", "text"}},
    {"PostPublished", COUNT("posts", "+", "userId")},
    {"PostLiked", "UPDATE posts SET likes = likes + 1 WHERE post_id = ?",
     {"postId"}},
    {"PostDeleted", "DELETE FROM posts_fts WHERE rowid ="
     " (SELECT seq FROM posts WHERE post_id = ?)", {"postId"}},
    {"PostDeleted", "DELETE FROM posts WHERE post_id = ?", {"postId"}},
    {"PostDeleted", COUNT("posts", "-", "userId")},
    {NULL}};

/* Binds the members of ev that e names into a: how many, or -1 when ev
 * lacks one. */
static int event_args(const cleave_event *ev, const effect *e, cleave_value *a)
{
	int n = 0;
	for (; n < 5 && e->args[n]; n++) {
		const char *k = e->args[n], *v = cleave_json_str(ev->json, k);
		int64_t x = ev->position;
		if (*k != '#' && !v && cleave_json_get_int(ev->json, k, &x))
			return -1;
		a[n] = v ? cleave_text(v) : cleave_int(x);
	}
	return n;
}

static int apply(cleave_rtx *tx, const cleave_event *ev)
{
	for (const effect *e = effects; e->type; e++) {
		cleave_value a[5];
		int64_t changed = 0;
		int n, rc;
		if (strcmp(e->type, ev->type))
			continue;
		if ((n = event_args(ev, e, a)) >= 0 &&
		    (rc = cleave_rtx_exec(tx, e->sql, a, n, &changed)))
			return rc;
		if (n < 0 || changed != 1)
			return cleave_error(CLEAVE_ECORRUPT, "%s at %lld: %s",
					    ev->type, (long long)ev->position,
					    n < 0 ? "a member is missing"
						  : "not one row changed");
	}
	return 0;
}

static const cleave_projection_def projections[] = {
    {"social", 1, "sqlite", NULL, setup, apply, CLEAVE_POISON_PARK}, {0}};

/* ---- queries: each is one SQL statement giving the answer's text -------- */

/* ?1 is the query's parameter (an id, or for a search the FTS5 expression
 * of q), ?2 the cursor, ?3 the limit.  No row: 404 `code`. */
typedef struct qspec {
	const char *param;
	int limit; /* its default; 0: the query takes no limit */
	bool page; /* takes a cursor */
	const char *code, *sql;
} qspec;

/* A page of rows (seq, item), newest first: the first ?3 of them, and the
 * seq of its last as the next cursor when `rows` gave one more. */
#define PAGE(rows, cond)                                                     \
	"WITH r AS MATERIALIZED (" rows "), p AS (SELECT * FROM r ORDER BY"    \
	" seq DESC LIMIT ?3) SELECT json_object('items', (SELECT"              \
	" json_group_array(json(item)) FROM p), 'next_cursor', (SELECT"        \
	" CAST(min(seq) AS TEXT) FROM p WHERE (SELECT count(*) FROM r) > ?3))" \
	" WHERE " cond
#define IS_USER "EXISTS (SELECT 1 FROM users WHERE user_id = ?1)"
/* The followees' posts from the cursor on: ahead of this page. */
#define AHEAD "(SELECT count(*) FROM (SELECT 1 FROM follows JOIN posts" \
	" ON author = followee WHERE follower = ?1 AND seq >= ?2 LIMIT "    \
	TL_MAX "))"

static const qspec qspecs[] = {
    {"postId", 0, false, "post_not_found", "SELECT json_insert(item, '$.likes',"
     " likes) FROM posts WHERE post_id = ?1"},
    {"userId", 0, false, "user_not_found", "SELECT json_object('userId',"
     " user_id, 'name', name, 'followers', followers, 'following', following,"
     " 'posts', posts) FROM users WHERE user_id = ?1"},
    /* a page of the newest below the cursor of each followee, merged; the
     * 1,000 cap less those ahead: F × (?3 + 1) + F + 1,000 rows at most */
    {"userId", 20, true, "user_not_found", PAGE("SELECT seq, item FROM follows"
     " JOIN posts ON author = followee AND seq < ?2 AND seq >= coalesce(("
     "SELECT seq FROM posts WHERE author = followee AND seq < ?2 ORDER BY"
     " seq DESC LIMIT 1 OFFSET ?3), 0) WHERE follower = ?1 ORDER BY seq DESC"
     " LIMIT min(?3 + 1, " TL_MAX " - " AHEAD ")", IS_USER)},
    {"userId", 20, true, "user_not_found", PAGE("SELECT seq, item FROM posts"
     " WHERE author = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3 + 1",
     IS_USER)},
    {NULL, 10, false, NULL, "SELECT json_object('items', json_group_array("
     "json_object('postId', post_id, 'userId', author, 'likes', likes)))"
     " FROM (SELECT * FROM posts WHERE likes > 0 ORDER BY likes DESC,"
     " post_id LIMIT ?3)"},
    {"q", 20, true, NULL, PAGE("SELECT seq, item FROM posts_fts JOIN posts ON"
     " seq = posts_fts.rowid WHERE posts_fts MATCH ?1 AND posts_fts.rowid <"
     " ?2 ORDER BY posts_fts.rowid DESC LIMIT ?3 + 1", "1")},
};

static int serve(cleave_query *q, const qspec *s)
{
	cleave_rtx *tx = cleave_query_rtx(q, 0);
	cleave_buf fts = CLEAVE_BUF_INIT;
	int64_t limit = s->limit, cursor = INT64_MAX;
	const char *p = NULL, *text;
	bool search = s->param && !strcmp(s->param, "q");
	cleave_rows *r;
	size_t n;
	int rc = 0, words = 1;
	if (s->param)
		rc = cleave_query_param_str(q, s->param, true,
					    search ? Q_BYTES : ID_MAX, &p);
	if (!rc && s->limit)
		rc = cleave_query_param_int(q, "limit", s->limit, 1,
					    CLEAVE_PAGE_MAX, &limit);
	if (!rc && s->page)
		rc = cleave_query_param_cursor(q, "cursor", &cursor);
	if (!rc && search &&
	    ((rc = cleave_rtx_fts_query(tx, p, Q_WORDS, &fts, &words)) ==
		 CLEAVE_EINVAL || (!rc && !words)))
		rc = cleave_query_fail(q, CLEAVE_EINVAL, "invalid_parameter",
				       "parameter 'q' must have 1 to %d words",
				       Q_WORDS);
	cleave_value a[] = {cleave_text(search ? fts.p : p), cleave_int(cursor),
			    cleave_int(limit)};
	if (!rc &&
	    !(rc = cleave_rtx_query(tx, s->sql, a, s->limit ? 3 : 1, &r))) {
		if ((rc = cleave_rows_next(r)) == 1 &&
		    (text = cleave_rows_text(r, 0, &n)))
			rc = cleave_query_reply_raw(q, text, n);
		else if (rc >= 0) /* "no post" or "no user": the code's noun */
			rc = cleave_query_fail(q, CLEAVE_ENOTFOUND, s->code,
					       "no %.4s '%s'", s->code, p);
		cleave_rows_close(r);
	}
	cleave_buf_free(&fts);
	return rc;
}

#define QUERY(f, i)                                                            \
	static int f(cleave_query *q)                                          \
	{                                                                      \
		return serve(q, &qspecs[i]);                                   \
	}
QUERY(q_post, 0)
QUERY(q_user, 1)
QUERY(q_timeline, 2)
QUERY(q_user_posts, 3)
QUERY(q_trending, 4)
QUERY(q_search, 5)

static const char *const reads[] = {"social", NULL};
static const cleave_query_def queries[] = {
    {"post", q_post, reads, "a post with its author's name and its likes"},
    {"user", q_user, reads, "a user with followers, following and posts"},
    {"timeline", q_timeline, reads,
     "the posts of the users one follows, newest first (the newest 1,000)"},
    {"user_posts", q_user_posts, reads, "a user's posts, newest first"},
    {"trending", q_trending, reads, "the most liked posts"},
    {"search_posts", q_search, reads, "posts with every word of q"},
    {0}};

static const cleave_domain social_domain = {
    .name = "social",
    .migrations = migrations,
    .commands = commands,
    .projections = projections,
    .queries = queries,
};

CLEAVE_DOMAIN_EXPORT(social_domain)
