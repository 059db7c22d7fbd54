"""Authorization matrix rows for /account/providers: every user manages only their own configs."""
from __future__ import annotations

from tests.authz import Route, World, same_for_signed_in
from tests.factories import make_provider, make_provider_config

SIGNED_IN_OK = same_for_signed_in("login", "ok")
# Staff included: nobody opens another user's config through these pages.
OTHERS_CONFIG = same_for_signed_in("login", 404)


def routes(world: World) -> list[Route]:
    provider = make_provider()
    theirs = make_provider_config(world.other, provider, api_key="sk-authz-0123456789abcdef")
    prefix = f"/account/providers/{provider.slug}"
    return [
        Route("GET", "/account/providers", "/account/providers", SIGNED_IN_OK),
        Route("POST", "/account/providers/<slug>/key", f"{prefix}/key", SIGNED_IN_OK,
              data={f"{provider.slug}-key-api_key": "sk-authz-own-key-0123456789"}),
        Route("POST", "/account/providers/<slug>/settings", f"{prefix}/settings", SIGNED_IN_OK,
              data={f"{provider.slug}-settings-base_url": "https://proxy.example.com/v1"}),
        Route("POST", "/account/providers/configs/<int:config_id>/test",
              f"/account/providers/configs/{theirs.id}/test", OTHERS_CONFIG),
        Route("POST", "/account/providers/configs/<int:config_id>/key/delete",
              f"/account/providers/configs/{theirs.id}/key/delete", OTHERS_CONFIG),
    ]
