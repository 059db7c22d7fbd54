"""One URL, two renderings: the full page, or one block of it for an HTMX request."""
from __future__ import annotations

from flask import Flask, current_app, make_response, redirect, render_template, request


def is_htmx() -> bool:
    """An HTMX request that wants a fragment (a history restore wants the full page)."""
    return request.headers.get("HX-Request") == "true" and not request.headers.get("HX-History-Restore-Request")


def render_block(template_name: str, block_name: str, **context) -> str:
    template = current_app.jinja_env.get_or_select_template(template_name)
    current_app.update_template_context(context)
    block = template.blocks[block_name]
    return "".join(block(template.new_context(context)))


def render_page_or_block(template_name: str, block_name: str, status: int = 200, **context):
    """Render ``block_name`` of the page for HTMX requests, the whole page otherwise."""
    if is_htmx():
        body = render_block(template_name, block_name, **context)
    else:
        body = render_template(template_name, **context)
    return make_response(body, status)


def navigate(url: str):
    """Go to ``url``: a redirect, or HX-Redirect for an HTMX request so the whole page changes."""
    if is_htmx():
        response = make_response("", 204)
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url)


def vary_on_htmx(response):
    # Every page may answer HTMX and plain requests differently; caches must keep both.
    response.vary.add("HX-Request")
    return response


def init_app(app: Flask) -> None:
    app.after_request(vary_on_htmx)
    app.jinja_env.globals["is_htmx"] = is_htmx
