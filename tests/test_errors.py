from sqlalchemy import update
from sqlalchemy.orm.exc import StaleDataError

from tests.factories import make_user
from webapp.accounts.models import User
from webapp.errors import handle_concurrent_edit


def test_a_lost_race_on_lock_version_is_a_clear_409(app, db_session):
    """The second of two writers is refused by the lock_version check, and told so plainly."""
    user = make_user(display_name="Before")
    db_session.commit()
    assert user.lock_version == 1  # loaded now, before the other writer's save
    # Another writer saves first and bumps lock_version; this session keeps its stale copy.
    db_session().expire_on_commit = False
    db_session.execute(
        update(User).where(User.id == user.id).values(display_name="Theirs", lock_version=User.lock_version + 1)
        .execution_options(synchronize_session=False)
    )
    db_session.commit()
    user.display_name = "Mine"
    try:
        db_session.flush()
    except StaleDataError as error:
        with app.test_request_context("/", headers={"HX-Request": "true"}):
            response = handle_concurrent_edit(error)
    else:
        raise AssertionError("the stale write was not refused")
    assert response.status_code == 409
    assert "changed this record at the same time" in response.get_data(as_text=True)
    db_session.expire_all()
    assert db_session.get(User, user.id).display_name == "Theirs"
