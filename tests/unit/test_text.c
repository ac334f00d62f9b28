/*
 * test_text.c — the public text toolkit (cleave.h): cleave_buf, JSON string
 * escaping and UTF-8 validation.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "cleave.h"

static char *esc(const char *s, size_t n)
{
	cleave_buf b = CLEAVE_BUF_INIT;
	cleave_buf_add_jstr(&b, s, n);
	return cleave_buf_steal(&b, NULL);
}

static void test_escape(void **state)
{
	struct {
		const char *in;
		size_t n;
		const char *out;
	} cases[] = {
	    {"plain", 5, "\"plain\""},
	    {"", 0, "\"\""},
	    {"a\"b\\c", 5, "\"a\\\"b\\\\c\""},
	    {"\n\r\t\b\f", 5, "\"\\n\\r\\t\\b\\f\""},
	    {"\x01\x1f", 2, "\"\\u0001\\u001f\""},
	    {"a\0b", 3, "\"a\\u0000b\""},
	    /* valid UTF-8 is kept as it is */
	    {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14,
	     "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""},
	    /* what is not UTF-8 becomes U+FFFD, one per byte */
	    {"\xff", 1, "\"\xef\xbf\xbd\""},
	    {"a\xc3", 2, "\"a\xef\xbf\xbd\""},             /* truncated */
	    {"\xc0\xaf", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\""}, /* overlong */
	    {"\xed\xa0\x80", 3,                             /* surrogate */
	     "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
	    {"\xf4\x90\x80\x80", 4, /* past U+10FFFF */
	     "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *o = esc(cases[i].in, cases[i].n);
		assert_non_null(o);
		if (strcmp(o, cases[i].out))
			fail_msg("case %zu: got %s", i, o);
		assert_true(cleave_utf8_valid(o, strlen(o)));
		free(o);
	}
	/* the worst case fits the documented room */
	char in[64], out[6 * 64 + 2];
	memset(in, 1, sizeof(in));
	assert_int_equal(cleave_json_escape(out, in, sizeof(in)) - out,
			 6 * 64 + 2);
}

static void test_utf8(void **state)
{
	assert_true(cleave_utf8_valid("", 0));
	assert_true(cleave_utf8_valid("a\0b", 3));
	assert_true(cleave_utf8_valid("\xc2\x80\xdf\xbf", 4));
	assert_true(cleave_utf8_valid("\xef\xbf\xbf\xf4\x8f\xbf\xbf", 7));
	assert_false(cleave_utf8_valid("\x80", 1));
	assert_false(cleave_utf8_valid("\xc1\xbf", 2));
	assert_false(cleave_utf8_valid("\xe0\x9f\xbf", 3));
	assert_false(cleave_utf8_valid("\xed\xbf\xbf", 3));
	assert_false(cleave_utf8_valid("\xf0\x8f\xbf\xbf", 4));
	assert_false(cleave_utf8_valid("\xf5\x80\x80\x80", 4));
	assert_false(cleave_utf8_valid("\xe2\x82", 2));
}

static void test_buf(void **state)
{
	cleave_buf b;
	cleave_buf_init(&b);
	cleave_buf_adds(&b, "n=");
	cleave_buf_add_i64(&b, INT64_MIN);
	cleave_buf_addc(&b, ' ');
	cleave_buf_add_u64(&b, UINT64_MAX);
	cleave_buf_addc(&b, ' ');
	cleave_buf_add_i64(&b, 0);
	assert_string_equal(b.p, "n=-9223372036854775808 18446744073709551615 0");
	cleave_buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.p, "");
	/* longer than addf's stack buffer */
	char big[1000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	cleave_buf_addf(&b, "<%s>%d", big, 7);
	assert_int_equal(b.len, 1002);
	assert_int_equal(b.p[1002], 0);
	size_t n;
	char *p = cleave_buf_steal(&b, &n);
	assert_int_equal(n, 1002);
	assert_null(b.p);
	free(p);
	/* an empty buffer steals as "" */
	p = cleave_buf_steal(&b, &n);
	assert_string_equal(p, "");
	assert_int_equal(n, 0);
	free(p);
	cleave_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_escape),
	    cmocka_unit_test(test_utf8),
	    cmocka_unit_test(test_buf),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
