"""Sections that other domains add to the support user page.

Support sits below billing, minions and training, so it cannot import them; they
register here instead (an upper layer importing a lower one), each with the permission
a viewer needs to see it::

    @user_panel("billing/_support_panel.html", "billing.read", order=10)
    def subscription_panel(user): return {"subscription": ..., "payments": ...}
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from webapp.accounts.models import User


@dataclass(frozen=True)
class UserPanel:
    template: str
    permission: str
    order: int
    load: Callable[[User], dict[str, Any]]


PANELS: list[UserPanel] = []
# How many rows a panel lists (the latest ones).
PANEL_ROWS = 5


def user_panel(template: str, permission: str, order: int) -> Callable:
    def register(load: Callable[[User], dict[str, Any]]) -> Callable:
        PANELS.append(UserPanel(template, permission, order, load))
        PANELS.sort(key=lambda panel: panel.order)
        return load

    return register


def panels_for(user: User, may: Callable[[str], bool]) -> list[tuple[str, dict[str, Any]]]:
    """(template, context) of every panel the viewer may see, in order."""
    return [(panel.template, panel.load(user)) for panel in PANELS if may(panel.permission)]
