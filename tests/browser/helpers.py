"""Steps shared by browser tests."""
import re

from playwright.sync_api import expect

DEMO_PASSWORD = "demo-password-123"


def sign_in(page, base_url: str, email: str) -> None:
    """Sign in through the real form as a demo account and wait to leave the sign-in page."""
    page.goto(f"{base_url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).not_to_have_url(re.compile(r"/login"))


def link_in_latest_mail(app, recipient: str, base_url: str, timeout: float = 30.0) -> str:
    """The one link of ``base_url`` in the newest mail the live server kept in its outbox for ``recipient``.

    Mail is delivered just after the response, so this waits for it a little.
    """
    import time

    from sqlalchemy import select

    from webapp.extensions import db
    from webapp.system.models import OutboxMessage

    deadline = time.monotonic() + timeout
    while True:
        with app.app_context():
            body = db.session.scalars(select(OutboxMessage.body).where(OutboxMessage.recipient == recipient)
                                      .order_by(OutboxMessage.id.desc())).first()
        if body or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert body, f"no mail to {recipient} in the outbox"
    (link,) = re.findall(re.escape(base_url) + r"/\S+", body)
    return link
