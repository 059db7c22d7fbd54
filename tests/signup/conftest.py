from tests.accounts.conftest import limited_app, limited_client, mailbox  # noqa: F401  (shared fixtures)
