from tests.accounts.conftest import mailbox  # noqa: F401  (the shared outbox fixture)
