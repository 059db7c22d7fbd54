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
