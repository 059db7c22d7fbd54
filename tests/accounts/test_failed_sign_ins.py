"""Failed sign-ins count against an account only until its owner signs in: occasional typos never add up."""
from tests.conftest import attempt_login
from tests.factories import make_user

# Far more failures in total than any lockout or throttling threshold allows in a row.
ROUNDS, TYPOS_PER_ROUND = 6, 2


def test_a_successful_sign_in_resets_the_failed_count_so_typos_never_add_up(client, db_session):
    user = make_user()
    for round_number in range(ROUNDS):
        browser = client.application.test_client()
        for _ in range(TYPOS_PER_ROUND):
            assert attempt_login(browser, user, password="a typo in the password").status_code == 200
        response = attempt_login(browser, user)
        assert response.status_code == 302, (
            f"sign-in {round_number + 1} refused after {TYPOS_PER_ROUND * (round_number + 1)} typos in all, "
            f"never more than {TYPOS_PER_ROUND} in a row"
        )
        assert browser.get("/account").status_code == 200
