"""Shared set-up of the engine tests: a verified user, a minion, the demo datasets in the artifact store."""
from __future__ import annotations

import itertools

from tests.factories import make_minion, make_user
from webapp.artifacts import new_key, write_stream
from webapp.datasets.models import Dataset
from webapp.extensions import db
from webapp.seed.intents import intents_jsonl
from webapp.training.services import NewJob, start_job

_sequence = itertools.count(1)


def make_dataset(owner, rows: int, seed: int, name: str) -> Dataset:
    """A JSONL dataset of ``rows`` support messages (generator ``seed``), stored in the artifact store."""
    stored = write_stream(new_key("datasets", str(owner.id), suffix=".jsonl"), [intents_jsonl(rows, seed)])
    dataset = Dataset(owner_user_id=owner.id, name=name, slug=f"dataset-{next(_sequence)}",
                      format="jsonl", uri=stored.uri, size_bytes=stored.size_bytes, row_count=rows)
    db.session.add(dataset)
    db.session.flush()
    return dataset


def queue_internal_job(owner=None, minion=None, epochs: int = 4, train_rows: int = 240, validation_rows: int = 80,
                       **hyperparameters):
    """A queued internal job through the real start path (quotas, events, dispatch after commit)."""
    owner = owner or make_user()
    minion = minion or make_minion(owner)
    train = make_dataset(owner, train_rows, seed=11, name="Intents train")
    validation = make_dataset(owner, validation_rows, seed=12, name="Intents validation") if validation_rows else None
    job = start_job(owner, NewJob(minion=minion, model=minion.model, train=train, validation=validation,
                                  hyperparameters={"epochs": epochs, **hyperparameters}))
    db.session.commit()
    return job
