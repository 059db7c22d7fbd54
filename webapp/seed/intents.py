"""The demo's small training set: support messages and the team each belongs to.

Generated from templates with a fixed seed, so every install trains on the same rows;
the built-in trainer learns it in seconds, and the words that point to each team are
mixed with words shared by all of them, so the task is learnable but not trivial.
"""
from __future__ import annotations

import json
import random

INTENTS = {
    "billing": (["I was charged twice for", "please refund", "why is my invoice higher for", "update the card for",
                 "the payment failed for", "send me a receipt for"],
                ["my subscription", "last month", "the pro plan", "this invoice", "my card", "the renewal"]),
    "shipping": (["where is my parcel with", "the courier lost", "change the delivery address for",
                  "tracking has not moved for", "my package arrived damaged with", "when will you ship"],
                 ["the order", "my parcel", "the box", "the delivery", "the shipment", "my package"]),
    "technical": (["the app crashes when I open", "I get error 500 on", "the page will not load",
                   "sync stopped working for", "the export button is broken on", "it freezes when loading"],
                  ["the dashboard", "the settings page", "my reports", "the mobile app", "the editor", "the api"]),
    "account": (["I cannot sign in to", "reset the password of", "change the email on",
                 "enable two factor for", "my login is locked on", "rename the owner of"],
                ["my account", "the team account", "my profile", "the admin user", "my login", "the workspace"]),
}
SHARED_WORDS = ["hello", "please", "thanks", "today", "again", "urgent", "help", "hi team", "asap", "quick question"]


def intent_rows(count: int, seed: int) -> list[dict[str, str]]:
    """``count`` prompt/completion rows; each completion is the team the message belongs to."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        team = rng.choice(sorted(INTENTS))
        openings, objects = INTENTS[team]
        # Real inboxes are not clean: a third of the messages name another team's object, and some
        # say only what they are about, so the object alone is a weak hint.
        if rng.random() < 0.35:
            objects = INTENTS[rng.choice(sorted(INTENTS))][1]
        opening = rng.choice(openings) if rng.random() > 0.15 else rng.choice(SHARED_WORDS)
        words = [rng.choice(SHARED_WORDS), opening, rng.choice(objects)]
        if rng.random() < 0.5:
            words.append(rng.choice(SHARED_WORDS))
        rows.append({"prompt": " ".join(words), "completion": team})
    return rows


def intents_jsonl(count: int, seed: int) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in intent_rows(count, seed)).encode()
