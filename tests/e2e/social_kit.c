/*
 * social_kit.c — the social example's rules with the test kit
 * (cleave_test.h), built against the installed Cleave and linked with the
 * example's social.so (test_social.py builds and runs it).  Exit 0 when
 * every expectation holds; otherwise each failure is printed.
 */
#include <stdio.h>

#include <cleave_test.h>

static int failures;

#define EXPECT(x)                                                             \
	do {                                                                  \
		if ((x)) {                                                    \
			fprintf(stderr, "line %d: %s: %s\n", __LINE__, #x,    \
				cleave_tk_why(t));                            \
			failures++;                                           \
		}                                                             \
	} while (0)

int main(void)
{
	int v = 0;
	const cleave_domain *d = cleave_domain_entry(&v);
	cleave_tk *t;
	if (v != CLEAVE_API_VERSION || cleave_tk_open(d, &t)) {
		fprintf(stderr, "cannot open the social domain: %s\n",
			cleave_errmsg());
		return 1;
	}
	EXPECT(cleave_tk_given(t, "RegisterUser",
			       "{\"userId\":\"ann\",\"name\":\"Ann\"}"));
	EXPECT(cleave_tk_given(t, "RegisterUser",
			       "{\"userId\":\"bo\",\"name\":\"Bo\"}"));

	/* the checks, in the contract's order */
	EXPECT(cleave_tk_when(t, "Follow",
			      "{\"followerId\":\"ann\",\"followeeId\":\"ann\"}"));
	EXPECT(cleave_tk_then_error(t, "cannot_follow_self"));
	EXPECT(cleave_tk_when(t, "Follow",
			      "{\"followerId\":\"ann\",\"followeeId\":\"zed\"}"));
	EXPECT(cleave_tk_then_error(t, "user_not_found"));
	EXPECT(cleave_tk_when(t, "Follow",
			      "{\"followerId\":\"ann\",\"followeeId\":\"bo\"}"));
	EXPECT(cleave_tk_then_events(t, "[{\"type\":\"Followed\"}]"));
	EXPECT(cleave_tk_when(t, "Follow",
			      "{\"followerId\":\"ann\",\"followeeId\":\"bo\"}"));
	EXPECT(cleave_tk_then_error(t, "already_following"));
	EXPECT(cleave_tk_when(t, "Post", "{\"postId\":\"p1\",\"userId\":\"bo\","
					 "\"text\":\"\"}"));
	EXPECT(cleave_tk_then_error(t, "invalid_argument"));

	/* a post reaches the follower's timeline; a delete takes it back */
	EXPECT(cleave_tk_when(t, "Post", "{\"postId\":\"p1\",\"userId\":\"bo\","
					 "\"text\":\"caf\\u00e9 at noon\"}"));
	EXPECT(cleave_tk_then_events(
	    t, "[{\"type\":\"PostPublished\",\"data\":{\"postId\":\"p1\"}}]"));
	EXPECT(cleave_tk_query(t, "timeline", "userId=ann",
			       "{\"items\":[{\"postId\":\"p1\",\"userId\":\"bo\","
			       "\"name\":\"Bo\"}],\"next_cursor\":null}"));
	EXPECT(cleave_tk_query(t, "timeline", "userId=bo",
			       "{\"items\":[],\"next_cursor\":null}"));
	EXPECT(cleave_tk_query(t, "search_posts", "q=CAFE",
			       "{\"items\":[{\"postId\":\"p1\"}]}"));
	EXPECT(cleave_tk_given(t, "Like",
			       "{\"postId\":\"p1\",\"userId\":\"ann\"}"));
	EXPECT(cleave_tk_query(t, "post", "postId=p1", "{\"likes\":1}"));
	EXPECT(cleave_tk_when(t, "DeletePost",
			      "{\"postId\":\"p1\",\"userId\":\"ann\"}"));
	EXPECT(cleave_tk_then_error(t, "not_author"));
	EXPECT(cleave_tk_given(t, "DeletePost",
			       "{\"postId\":\"p1\",\"userId\":\"bo\"}"));
	EXPECT(cleave_tk_query(t, "timeline", "userId=ann",
			       "{\"items\":[],\"next_cursor\":null}"));
	EXPECT(cleave_tk_query_error(t, "post", "postId=p1",
				     "post_not_found"));
	EXPECT(cleave_tk_when(t, "Post", "{\"postId\":\"p1\",\"userId\":\"bo\","
					 "\"text\":\"again\"}"));
	EXPECT(cleave_tk_then_error(t, "post_exists"));
	cleave_tk_close(t);
	if (failures)
		fprintf(stderr, "%d expectation(s) failed\n", failures);
	else
		printf("social_kit: every expectation held\n");
	return failures ? 1 : 0;
}
