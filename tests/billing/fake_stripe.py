"""A local HTTP server that answers like Stripe's API (version 2026-10-28); nothing leaves the machine.

It speaks Stripe's wire format: form-encoded bodies with bracketed keys (``items[0][price]``),
bearer secret keys, JSON objects with ``object`` and ``id``, Stripe's error shape, and the
``Idempotency-Key`` header (a repeated key gets the first answer back). It keeps customers,
Checkout Sessions, Billing Portal sessions, subscriptions and their schedules, invoice
previews (prorated as Stripe prorates: unused time credited, remaining time charged), invoice
items and refunds. ``/checkout/<id>`` is the hosted Checkout page: paying there starts the
subscription and sends the browser to the session's ``success_url``.
"""
from __future__ import annotations

import itertools
import re
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.fake_http import JSONHandler, LocalServer

SECRET_KEY = "sk_test_FakeStripeConsoleKey0123456789"
MONTH = 30 * 24 * 3600
_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_Fake{next(_ids):08d}"


def nested(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding read back: ``a[b][0][c]=v`` becomes ``{"a": {"b": [{"c": "v"}]}}``."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part, following in zip(parts, parts[1:]):
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(root)


def _lists(node: Any) -> Any:
    if isinstance(node, dict):
        if node and all(key.isdigit() for key in node):
            return [_lists(node[key]) for key in sorted(node, key=int)]
        return {key: _lists(value) for key, value in node.items()}
    return node


class FakeStripeHandler(JSONHandler):
    def do_GET(self) -> None:  # noqa: N802  (the http.server hook's name)
        self.route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self.route("POST")

    def route(self, method: str) -> None:
        stripe: FakeStripe = self.server.fake
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        params = nested(parse_qsl(body if method == "POST" else parts.query, keep_blank_values=True))
        stripe.requests.append((method, parts.path, params, dict(self.headers)))
        if parts.path.startswith("/checkout/") or parts.path.startswith("/portal/"):
            return self.hosted_page(method, parts.path)
        if self.headers.get("Authorization") != f"Bearer {stripe.secret_key}":
            return self.reply(401, {"error": {"type": "invalid_request_error",
                                              "message": "Invalid API Key provided: sk_test_****"}})
        key = self.headers.get("Idempotency-Key")
        if method == "POST" and key and key in stripe.idempotent:
            status, document = stripe.idempotent[key]
            return self.reply(status, document)
        status, document = stripe.answer(method, parts.path, params)
        if method == "POST" and key:
            stripe.idempotent[key] = (status, document)
        self.reply(status, document)

    def hosted_page(self, method: str, path: str) -> None:
        stripe: FakeStripe = self.server.fake
        session_id = path.split("/")[2]
        if path.startswith("/checkout/") and method == "POST":
            session = stripe.complete_checkout(session_id)
            self.send_response(303)
            self.send_header("Location", session["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        title = "Pay with card" if path.startswith("/checkout/") else "Manage your billing"
        form = (f'<form method="post" action="/checkout/{session_id}/pay"><button type="submit">Pay</button></form>'
                if path.startswith("/checkout/") else "")
        html = (f'<!doctype html><html lang="en"><head><title>{title}</title></head>'
                f"<body><main><h1>{title}</h1>{form}</main></body></html>").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(html)))
        self.end_headers()
        self.wfile.write(html)


def error(status: int, message: str, param: str | None = None) -> tuple[int, dict]:
    return status, {"error": {"type": "invalid_request_error", "message": message, "param": param}}


class FakeStripe(LocalServer):
    """``with FakeStripe() as stripe_server: stripe.api_base = stripe_server.url("")``."""

    def __init__(self, secret_key: str = SECRET_KEY) -> None:
        super().__init__(FakeStripeHandler)
        self.server.fake = self
        self.secret_key = secret_key
        self.requests: list[tuple[str, str, dict, dict]] = []
        self.idempotent: dict[str, tuple[int, dict]] = {}
        self.prices: dict[str, dict] = {}
        self.customers: dict[str, dict] = {}
        self.sessions: dict[str, dict] = {}
        self.subscriptions: dict[str, dict] = {}
        self.schedules: dict[str, dict] = {}
        self.invoices: dict[str, dict] = {}
        self.invoice_items: dict[str, dict] = {}
        self.refunds: dict[str, dict] = {}
        self.now = lambda: int(time.time())

    def add_price(self, unit_amount: int, currency: str = "usd", interval: str = "month") -> str:
        price_id = new_id("price")
        self.prices[price_id] = {"id": price_id, "object": "price", "active": True, "currency": currency,
                                 "unit_amount": unit_amount, "type": "recurring", "product": new_id("prod"),
                                 "recurring": {"interval": interval, "interval_count": 1}}
        return price_id

    def calls(self, method: str, path_prefix: str) -> list[dict]:
        """The parameters of every request to paths starting with ``path_prefix``."""
        return [params for m, path, params, _ in self.requests if m == method and path.startswith(path_prefix)]

    # --- the API ----------------------------------------------------------------------------

    def answer(self, method: str, path: str, params: dict) -> tuple[int, dict]:
        routes = [
            ("POST", r"/v1/customers", lambda: self.create_customer(params)),
            ("POST", r"/v1/checkout/sessions", lambda: self.create_session(params)),
            ("POST", r"/v1/billing_portal/sessions", lambda: self.create_portal(params)),
            ("GET", r"/v1/subscriptions/(?P<id>\w+)", lambda id: self.found(self.subscriptions, id, "subscription")),
            ("POST", r"/v1/subscriptions/(?P<id>\w+)", lambda id: self.modify_subscription(id, params)),
            ("POST", r"/v1/invoices/create_preview", lambda: self.preview(params)),
            ("POST", r"/v1/invoiceitems", lambda: self.create_invoice_item(params)),
            ("POST", r"/v1/refunds", lambda: self.create_refund(params)),
            ("POST", r"/v1/subscription_schedules", lambda: self.create_schedule(params)),
            ("POST", r"/v1/subscription_schedules/(?P<id>\w+)", lambda id: self.modify_schedule(id, params)),
            ("POST", r"/v1/subscription_schedules/(?P<id>\w+)/release", lambda id: self.release_schedule(id)),
        ]
        for route_method, pattern, handler in routes:
            matched = re.fullmatch(pattern, path)
            if matched and route_method == method:
                return handler(**matched.groupdict())
        return error(404, f"Unrecognized request URL ({method}: {path}).")

    def found(self, table: dict, object_id: str, kind: str) -> tuple[int, dict]:
        if object_id not in table:
            return error(404, f"No such {kind}: '{object_id}'", "id")
        return 200, table[object_id]

    def create_customer(self, params: dict) -> tuple[int, dict]:
        customer = {"id": new_id("cus"), "object": "customer", "email": params.get("email"),
                    "name": params.get("name"), "metadata": params.get("metadata", {}), "created": self.now(),
                    "livemode": False}
        self.customers[customer["id"]] = customer
        return 200, customer

    def create_session(self, params: dict) -> tuple[int, dict]:
        if params.get("mode") != "subscription":
            return error(400, "This fake only runs subscription-mode Checkout.", "mode")
        for name in ("success_url", "line_items"):
            if name not in params:
                return error(400, f"Missing required param: {name}.", name)
        price = params["line_items"][0]["price"]
        if price not in self.prices:
            return error(400, f"No such price: '{price}'", "line_items[0][price]")
        if params.get("customer") and params["customer"] not in self.customers:
            return error(400, f"No such customer: '{params['customer']}'", "customer")
        session_id = new_id("cs_test")
        session = {"id": session_id, "object": "checkout.session", "mode": "subscription", "status": "open",
                   "payment_status": "unpaid", "customer": params.get("customer"), "subscription": None,
                   "client_reference_id": params.get("client_reference_id"), "metadata": params.get("metadata", {}),
                   "success_url": params["success_url"], "cancel_url": params.get("cancel_url"),
                   "line_items_price": price, "url": self.url(f"/checkout/{session_id}"), "created": self.now(),
                   "livemode": False}
        self.sessions[session_id] = session
        return 200, session

    def create_portal(self, params: dict) -> tuple[int, dict]:
        if params.get("customer") not in self.customers:
            return error(400, f"No such customer: '{params.get('customer')}'", "customer")
        portal_id = new_id("bps")
        return 200, {"id": portal_id, "object": "billing_portal.session", "customer": params["customer"],
                     "return_url": params.get("return_url"), "url": self.url(f"/portal/{portal_id}"),
                     "created": self.now(), "livemode": False}

    def complete_checkout(self, session_id: str) -> dict:
        """The customer paid at Checkout: the subscription starts (what the browser's Pay button does)."""
        session = self.sessions[session_id]
        subscription = self.start_subscription(session["customer"], session["line_items_price"],
                                               session["metadata"])
        session.update(status="complete", payment_status="paid", subscription=subscription["id"])
        return session

    def start_subscription(self, customer: str, price: str, metadata: dict | None = None) -> dict:
        now = self.now()
        subscription_id = new_id("sub")
        subscription = {
            "id": subscription_id, "object": "subscription", "customer": customer, "status": "active",
            "cancel_at_period_end": False, "cancel_at": None, "canceled_at": None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None}, "schedule": None,
            "created": now, "start_date": now, "metadata": metadata or {}, "livemode": False,
            "items": {"object": "list", "has_more": False, "url": f"/v1/subscription_items?subscription={subscription_id}",
                      "data": [{"id": new_id("si"), "object": "subscription_item", "price": self.prices[price],
                                "quantity": 1, "subscription": subscription_id,
                                "current_period_start": now, "current_period_end": now + MONTH}]},
        }
        self.subscriptions[subscription_id] = subscription
        self.invoice(subscription, self.prices[price]["unit_amount"], "subscription_create", paid=True)
        return subscription

    def proration_lines(self, subscription: dict, price: str, at: int) -> list[dict]:
        item = subscription["items"]["data"][0]
        start, end = item["current_period_start"], item["current_period_end"]
        if not start <= at <= end:
            raise ValueError("proration_date must be within the current period")
        remaining = (end - at) / (end - start)
        old, new = item["price"], self.prices[price]
        return [
            {"id": new_id("il"), "object": "line_item", "amount": -round(old["unit_amount"] * remaining),
             "currency": old["currency"], "description": f"Unused time on {old['id']}",
             "parent": {"type": "subscription_item_details",
                        "subscription_item_details": {"proration": True, "subscription_item": item["id"]}}},
            {"id": new_id("il"), "object": "line_item", "amount": round(new["unit_amount"] * remaining),
             "currency": new["currency"], "description": f"Remaining time on {new['id']}",
             "parent": {"type": "subscription_item_details",
                        "subscription_item_details": {"proration": True, "subscription_item": item["id"]}}},
        ]

    def invoice_document(self, subscription: dict, lines: list[dict], reason: str) -> dict:
        total = sum(line["amount"] for line in lines)
        invoice_id = new_id("in")
        return {
            "id": invoice_id, "object": "invoice", "customer": subscription["customer"], "currency": "usd",
            "billing_reason": reason, "status": "draft", "amount_due": max(total, 0), "amount_paid": 0,
            "amount_remaining": max(total, 0), "subtotal": total, "total": total, "attempt_count": 0,
            "next_payment_attempt": None, "number": f"FAKE-{invoice_id[-4:]}", "description": None,
            "hosted_invoice_url": f"https://invoice.stripe.com/i/acct_fake/{invoice_id}",
            "invoice_pdf": f"https://pay.stripe.com/invoice/acct_fake/{invoice_id}/pdf",
            "parent": {"type": "subscription_details", "quote_details": None,
                       "subscription_details": {"subscription": subscription["id"], "metadata": {}}},
            "lines": {"object": "list", "has_more": False, "data": lines},
            "payments": {"object": "list", "data": []},
            "status_transitions": {"paid_at": None, "finalized_at": None},
            "created": self.now(), "livemode": False,
        }

    def invoice(self, subscription: dict, amount: int, reason: str, paid: bool) -> dict:
        """An invoice of ``subscription`` (with its pending invoice items), paid or failed now."""
        pending = [item for item in self.invoice_items.values()
                   if item["subscription"] == subscription["id"] and item["invoice"] is None]
        lines = [{"id": new_id("il"), "object": "line_item", "amount": amount, "currency": "usd",
                  "description": "1 × subscription", "metadata": {},
                  "parent": {"type": "subscription_item_details", "subscription_item_details": {"proration": False}}}]
        lines += [{"id": new_id("il"), "object": "line_item", "amount": item["amount"], "currency": item["currency"],
                   "description": item["description"], "metadata": item["metadata"],
                   "parent": {"type": "invoice_item_details", "invoice_item_details": {"invoice_item": item["id"]}}}
                  for item in pending]
        invoice = self.invoice_document(subscription, lines, reason)
        for item in pending:
            item["invoice"] = invoice["id"]
        return self.settle(invoice, paid)

    def settle(self, invoice: dict, paid: bool) -> dict:
        invoice["attempt_count"] += 1
        if paid:
            intent = new_id("pi")
            invoice.update(status="paid", amount_paid=invoice["amount_due"], amount_remaining=0,
                           next_payment_attempt=None)
            invoice["status_transitions"]["paid_at"] = self.now()
            invoice["payments"]["data"] = [{"id": new_id("inpay"), "object": "invoice_payment", "is_default": True,
                                            "status": "paid", "amount_paid": invoice["amount_due"],
                                            "payment": {"type": "payment_intent", "payment_intent": intent}}]
        else:
            invoice.update(status="open", next_payment_attempt=self.now() + 3 * 24 * 3600)
        self.invoices[invoice["id"]] = invoice
        return invoice

    def renew(self, subscription_id: str, paid: bool) -> dict:
        """Stripe's renewal at the period end: the next period and its invoice (paid, or failed and retried)."""
        subscription = self.subscriptions[subscription_id]
        item = subscription["items"]["data"][0]
        item["current_period_start"] = item["current_period_end"]
        item["current_period_end"] += MONTH
        subscription["status"] = "active" if paid else "past_due"
        return self.invoice(subscription, item["price"]["unit_amount"], "subscription_cycle", paid)

    def modify_subscription(self, subscription_id: str, params: dict) -> tuple[int, dict]:
        if subscription_id not in self.subscriptions:
            return error(404, f"No such subscription: '{subscription_id}'", "id")
        subscription = self.subscriptions[subscription_id]
        if "cancel_at_period_end" in params:
            cancel = params["cancel_at_period_end"] == "true"
            item = subscription["items"]["data"][0]
            subscription.update(cancel_at_period_end=cancel, cancel_at=item["current_period_end"] if cancel else None,
                                canceled_at=self.now() if cancel else None)
        if "items" in params:
            change = params["items"][0]
            item = subscription["items"]["data"][0]
            if change.get("id") != item["id"]:
                return error(400, f"Subscription item {change.get('id')} does not belong to {subscription_id}.")
            if change["price"] not in self.prices:
                return error(400, f"No such price: '{change['price']}'", "items[0][price]")
            at = int(params.get("proration_date") or self.now())
            lines = self.proration_lines(subscription, change["price"], at)
            item["price"] = self.prices[change["price"]]
            if params.get("proration_behavior") == "always_invoice":
                self.settle(self.invoice_document(subscription, lines, "subscription_update"), paid=True)
        return 200, subscription

    def preview(self, params: dict) -> tuple[int, dict]:
        subscription = self.subscriptions.get(params.get("subscription"))
        if subscription is None:
            return error(400, "No such subscription.", "subscription")
        details = params.get("subscription_details", {})
        change = details["items"][0]
        at = int(details.get("proration_date") or self.now())
        try:
            lines = self.proration_lines(subscription, change["price"], at)
        except ValueError as problem:
            return error(400, str(problem), "subscription_details[proration_date]")
        if details.get("proration_behavior") != "always_invoice":
            next_price = self.prices[change["price"]]
            lines.append({"id": new_id("il"), "object": "line_item", "amount": next_price["unit_amount"],
                          "currency": "usd", "description": "Next period",
                          "parent": {"type": "subscription_item_details"}})
        preview = self.invoice_document(subscription, lines, "upcoming")
        preview["id"] = None  # a preview is not an invoice yet
        return 200, preview

    def create_invoice_item(self, params: dict) -> tuple[int, dict]:
        if params.get("customer") not in self.customers:
            return error(400, f"No such customer: '{params.get('customer')}'", "customer")
        if params.get("subscription") and params["subscription"] not in self.subscriptions:
            return error(400, f"No such subscription: '{params['subscription']}'", "subscription")
        item = {"id": new_id("ii"), "object": "invoiceitem", "customer": params["customer"],
                "subscription": params.get("subscription"), "amount": int(params["amount"]),
                "currency": params["currency"], "description": params.get("description"),
                "metadata": params.get("metadata", {}), "invoice": None, "date": self.now(), "livemode": False}
        self.invoice_items[item["id"]] = item
        return 200, item

    def create_refund(self, params: dict) -> tuple[int, dict]:
        intent = params.get("payment_intent")
        invoice = next((invoice for invoice in self.invoices.values()
                        for entry in invoice["payments"]["data"] if entry["payment"]["payment_intent"] == intent), None)
        if invoice is None:
            return error(400, f"No such payment_intent: '{intent}'", "payment_intent")
        refunded = sum(refund["amount"] for refund in self.refunds.values() if refund["payment_intent"] == intent)
        amount = int(params.get("amount") or invoice["amount_paid"] - refunded)
        if amount + refunded > invoice["amount_paid"]:
            return error(400, f"Refund amount (${amount / 100:.2f}) is greater than unrefunded amount on charge "
                              f"(${(invoice['amount_paid'] - refunded) / 100:.2f})", "amount")
        refund = {"id": new_id("re"), "object": "refund", "amount": amount, "currency": "usd",
                  "payment_intent": intent, "status": "succeeded", "metadata": params.get("metadata", {}),
                  "created": self.now()}
        self.refunds[refund["id"]] = refund
        return 200, refund

    def create_schedule(self, params: dict) -> tuple[int, dict]:
        subscription = self.subscriptions.get(params.get("from_subscription"))
        if subscription is None:
            return error(400, "No such subscription.", "from_subscription")
        if subscription["schedule"]:
            return error(400, f"The subscription is already attached to schedule {subscription['schedule']}.")
        item = subscription["items"]["data"][0]
        schedule = {"id": new_id("sub_sched"), "object": "subscription_schedule", "status": "active",
                    "subscription": subscription["id"], "customer": subscription["customer"],
                    "end_behavior": "release", "released_subscription": None,
                    "phases": [{"items": [{"price": item["price"]["id"], "quantity": 1}],
                                "start_date": item["current_period_start"], "end_date": item["current_period_end"]}]}
        self.schedules[schedule["id"]] = schedule
        subscription["schedule"] = schedule["id"]
        return 200, schedule

    def modify_schedule(self, schedule_id: str, params: dict) -> tuple[int, dict]:
        schedule = self.schedules.get(schedule_id)
        if schedule is None or schedule["status"] != "active":
            return error(400, f"No active schedule: '{schedule_id}'")
        for phase in params.get("phases", []):
            for item in phase["items"]:
                if item["price"] not in self.prices:
                    return error(400, f"No such price: '{item['price']}'")
        schedule["phases"] = params.get("phases", schedule["phases"])
        schedule["end_behavior"] = params.get("end_behavior", schedule["end_behavior"])
        return 200, schedule

    def release_schedule(self, schedule_id: str) -> tuple[int, dict]:
        schedule = self.schedules.get(schedule_id)
        if schedule is None or schedule["status"] != "active":
            return error(400, f"No active schedule: '{schedule_id}'")
        schedule.update(status="released", released_subscription=schedule["subscription"])
        self.subscriptions[schedule["subscription"]]["schedule"] = None
        return 200, schedule
