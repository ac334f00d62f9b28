/*
 * test_testkit.c — the test kit for domains (cleave_test.h), on the bank
 * and the shop: given/when/then as their rules are stated in
 * docs/domains.md, and the kit's own reports when an expectation does not
 * hold.
 */
#include <string.h>

#include "testutil.h"

#include "cleave_test.h"
#include "dom.h"

#define OK(x)                                                                 \
	do {                                                                  \
		int rc_ = (x);                                                \
		if (rc_)                                                      \
			fail_msg("%s: %d: %s", #x, rc_, cleave_tk_why(t));    \
	} while (0)

static void test_bank_rules(void **state)
{
	cleave_tk *t;
	TU_OK(cleave_tk_open(&dom_bank, &t));
	OK(cleave_tk_given(t, "OpenAccount",
			   "{\"accountId\":\"a\",\"owner\":\"Ann\","
			   "\"currency\":\"EUR\"}"));
	OK(cleave_tk_given(t, "OpenAccount",
			   "{\"accountId\":\"b\",\"owner\":\"Bo\","
			   "\"currency\":\"EUR\"}"));
	OK(cleave_tk_given(t, "Deposit",
			   "{\"accountId\":\"a\",\"amount_cents\":500}"));

	/* a transfer moves money and says the balances after */
	OK(cleave_tk_when(t, "Transfer",
			  "{\"transferId\":\"t1\",\"from\":\"a\",\"to\":\"b\","
			  "\"amount_cents\":200}"));
	OK(cleave_tk_then_events(
	    t, "[{\"type\":\"TransferCompleted\",\"stream\":\"transfer-t1\","
	       "\"data\":{\"from\":\"a\",\"to\":\"b\",\"amount_cents\":200,"
	       "\"from_balance_cents\":300,\"to_balance_cents\":200}}]"));
	OK(cleave_tk_then_result(t, "{\"from_balance_cents\":300,"
				    "\"to_balance_cents\":200}"));

	/* the rules that say no, and write nothing */
	OK(cleave_tk_when(t, "Withdraw",
			  "{\"accountId\":\"b\",\"amount_cents\":201}"));
	OK(cleave_tk_then_error(t, "insufficient_funds"));
	OK(cleave_tk_when(t, "Transfer",
			  "{\"transferId\":\"t1\",\"from\":\"a\",\"to\":\"b\","
			  "\"amount_cents\":1}"));
	OK(cleave_tk_then_error(t, "transfer_exists"));
	OK(cleave_tk_when(t, "Transfer",
			  "{\"transferId\":\"t2\",\"from\":\"a\",\"to\":\"a\","
			  "\"amount_cents\":1}"));
	OK(cleave_tk_then_error(t, "same_account"));
	OK(cleave_tk_when(t, "Deposit",
			  "{\"accountId\":\"zz\",\"amount_cents\":1}"));
	OK(cleave_tk_then_error(t, "account_not_found"));
	OK(cleave_tk_when(t, "Deposit", "{\"accountId\":\"a\"}"));
	OK(cleave_tk_then_error(t, "invalid_argument"));
	OK(cleave_tk_when(t, "Deposit", "{\"accountId\":"));
	OK(cleave_tk_then_error(t, "malformed_json"));

	/* the read side */
	OK(cleave_tk_query(t, "balance", "accountId=a",
			   "{\"accountId\":\"a\",\"owner\":\"Ann\","
			   "\"currency\":\"EUR\",\"balance_cents\":300}"));
	OK(cleave_tk_query(t, "statement", "accountId=b",
			   "{\"items\":[{\"kind\":\"transfer_in\","
			   "\"amount_cents\":200,\"balance_after_cents\":200},"
			   "{\"kind\":\"open\"}],\"next_cursor\":null}"));
	OK(cleave_tk_query_error(t, "balance", "accountId=zz",
				 "account_not_found"));
	cleave_tk_close(t);
}

/* The shop's checkout, as docs/domains.md states it: the discount rounds
 * down, the cart empties and closes, a second checkout is refused. */
static void test_shop_checkout(void **state)
{
	cleave_tk *t;
	TU_OK(cleave_tk_open(&dom_shop, &t));
	OK(cleave_tk_given(t, "RegisterUser",
			   "{\"userId\":\"u\",\"name\":\"Ann\",\"country\":\"SE\"}"));
	OK(cleave_tk_given(t, "AddProduct",
			   "{\"productId\":\"p\",\"name\":\"Mug\","
			   "\"category\":\"kitchen\",\"price_cents\":333,"
			   "\"stock\":5}"));
	OK(cleave_tk_given(t, "CreatePromo",
			   "{\"code\":\"P7\",\"percent_off\":7,\"max_uses\":1,"
			   "\"expires_at\":4102444800}"));
	OK(cleave_tk_when(t, "Checkout", "{\"userId\":\"u\",\"cartId\":\"c\"}"));
	OK(cleave_tk_then_error(t, "cart_not_found"));
	OK(cleave_tk_given(t, "AddToCart",
			   "{\"cartId\":\"c\",\"userId\":\"u\",\"productId\":\"p\","
			   "\"quantity\":1}"));
	OK(cleave_tk_when(t, "Checkout",
			  "{\"userId\":\"u\",\"cartId\":\"c\",\"promoCode\":\"P7\"}"));
	OK(cleave_tk_then_events(
	    t, "[{\"type\":\"OrderPlaced\",\"data\":{\"userId\":\"u\","
	       "\"country\":\"SE\",\"total_cents\":310,"
	       "\"discount_cents\":23}}]"));
	OK(cleave_tk_then_result(t, "{\"subtotal_cents\":333,"
				    "\"discount_cents\":23,\"total_cents\":310}"));
	OK(cleave_tk_when(t, "Checkout", "{\"userId\":\"u\",\"cartId\":\"c\"}"));
	OK(cleave_tk_then_error(t, "cart_closed"));
	OK(cleave_tk_query(t, "product", "productId=p",
			   "{\"stock\":4,\"sold\":1,\"in_stock\":true}"));
	OK(cleave_tk_query(t, "top_products", NULL,
			   "{\"items\":[{\"productId\":\"p\",\"sold\":1}]}"));
	cleave_tk_close(t);
}

/* Given events: what projections and queries see, without commands. */
static void test_given_events(void **state)
{
	cleave_tk *t;
	TU_OK(cleave_tk_open(&dom_bank, &t));
	OK(cleave_tk_given_event(t, "account-x", "AccountOpened",
				 "{\"accountId\":\"x\",\"owner\":\"Xi\","
				 "\"currency\":\"SEK\",\"opened_at\":0}"));
	OK(cleave_tk_given_event(t, "account-x", "Deposited",
				 "{\"accountId\":\"x\",\"currency\":\"SEK\","
				 "\"amount_cents\":70,\"balance_cents\":70,"
				 "\"at\":0}"));
	OK(cleave_tk_query(t, "balance", "accountId=x",
			   "{\"balance_cents\":70,\"currency\":\"SEK\"}"));
	cleave_tk_close(t);
}

/* The kit says 1, and why, when an expectation does not hold. */
static void test_reports(void **state)
{
	cleave_tk *t;
	TU_OK(cleave_tk_open(&dom_bank, &t));
	OK(cleave_tk_given(t, "OpenAccount",
			   "{\"accountId\":\"a\",\"owner\":\"Ann\","
			   "\"currency\":\"EUR\"}"));
	assert_int_equal(cleave_tk_given(t, "Deposit",
					 "{\"accountId\":\"q\","
					 "\"amount_cents\":1}"),
			 1);
	assert_non_null(strstr(cleave_tk_why(t), "account_not_found"));
	OK(cleave_tk_when(t, "Deposit",
			  "{\"accountId\":\"a\",\"amount_cents\":5}"));
	assert_int_equal(cleave_tk_then_error(t, "insufficient_funds"), 1);
	assert_int_equal(
	    cleave_tk_then_events(t, "[{\"data\":{\"amount_cents\":6}}]"), 1);
	assert_non_null(strstr(cleave_tk_why(t), "$[0].data.amount_cents"));
	assert_int_equal(cleave_tk_then_events(t, "[]"), 1); /* one more */
	OK(cleave_tk_then_events(t, "[{\"type\":\"Deposited\"}]"));
	assert_int_equal(cleave_tk_query(t, "balance", "accountId=a",
					 "{\"balance_cents\":4}"),
			 1);
	assert_non_null(strstr(cleave_tk_why(t), "$.balance_cents"));
	assert_int_equal(cleave_tk_query_error(t, "balance", "accountId=a",
					       "account_not_found"),
			 1);
	cleave_tk_close(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bank_rules),
	    cmocka_unit_test(test_given_events),
	    cmocka_unit_test(test_shop_checkout),
	    cmocka_unit_test(test_reports),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
