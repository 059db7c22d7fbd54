import pytest

from tests.conftest import login
from tests.factories import make_user


@pytest.fixture
def me(client, db_session):
    """A plain user, signed in on ``client``."""
    user = make_user(display_name="Me Myself")
    login(client, user)
    return user
