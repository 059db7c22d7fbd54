"""The built-in CPU trainer (job_type "internal"): a scikit-learn text classifier.

It learns to answer each prompt with the right completion among those seen in training
(intents, labels, canned replies): hashed word and bigram features, and a logistic
regression fitted by stochastic gradient descent, one pass over the train split per
epoch in shuffled mini-batches. After each epoch it reports the training and validation
log loss and the validation accuracy; the validation split (or, without one, a held-out
fifth of the train split) scores it. The fitted model goes to the artifact store.
"""
from __future__ import annotations

import io
import random
from dataclasses import dataclass

import joblib
import numpy as np
from flask import current_app
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score, log_loss
from sklearn.pipeline import Pipeline
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from webapp.artifacts import new_key, open_artifact, write_stream
from webapp.datasets.formats import read_examples
from webapp.extensions import db
from webapp.training.models import TrainingJobDataset
from webapp.training.runtime import HyperParameter, JobCanceled, JobContext, JobFailed, TrainingOutcome

HYPERPARAMETERS = [
    HyperParameter("epochs", "Epochs", int, 1, 50, 8, "passes over the train split"),
    HyperParameter("learning_rate", "Learning rate", float, 0.0001, 1.0, 0.05, "step size of each update"),
    HyperParameter("batch_size", "Batch size", int, 1, 4096, 64, "examples per update"),
    HyperParameter("l2", "L2 regularisation", float, 0.0, 0.1, 0.0001, "pulls weights towards zero"),
]
MAX_TRAIN_ROWS = 200_000
# Where no validation split is given, this share of the train split is held out for it.
HOLDOUT_SHARE = 0.2
# Long epochs still look for a cancel every this many mini-batches.
CANCEL_CHECK_BATCHES = 200
FEATURES = 2 ** 13
METRIC_DIGITS = 4


@dataclass
class Split:
    prompts: list[str]
    labels: list[str]


def settings(hyperparameters: dict) -> dict[str, float]:
    """The declared hyperparameters, defaults filled in; JobFailed names a value out of its range."""
    values = {}
    for field in HYPERPARAMETERS:
        value = hyperparameters.get(field.name, field.default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not field.min <= value <= field.max:
            raise JobFailed(f"{field.label} must be a number from {field.min:g} to {field.max:g}; got {value!r}.")
        values[field.name] = field.type(value)
    return values


def load_splits(job_id: int) -> tuple[Split, Split, str]:
    """The job's train and validation examples, and where validation came from."""
    links = db.session.scalars(
        select(TrainingJobDataset).options(joinedload(TrainingJobDataset.dataset))
        .where(TrainingJobDataset.training_job_id == job_id)).all()
    splits = {"train": Split([], []), "validation": Split([], [])}
    max_row_chars = current_app.config["DATASET_MAX_ROW_CHARS"]
    for link in links:
        if link.split not in splits:
            continue
        target = splits[link.split]
        try:
            with open_artifact(link.dataset.uri) as stream:
                for example in read_examples(stream, link.dataset.format, max_row_chars):
                    target.prompts.append(example.prompt)
                    target.labels.append(example.completion.strip())
                    if len(target.prompts) > MAX_TRAIN_ROWS:
                        raise JobFailed(f"The internal trainer takes at most {MAX_TRAIN_ROWS:,} rows a split.")
        except (OSError, ValueError) as error:
            raise JobFailed(f"Dataset {link.dataset.name!r} could not be read: {error}") from None
    train, validation = splits["train"], splits["validation"]
    if not train.prompts:
        raise JobFailed("The job has no train split with rows.")
    if validation.prompts:
        return train, validation, "validation split"
    return *holdout(train), f"{HOLDOUT_SHARE:.0%} of the train split held out"


def holdout(train: Split) -> tuple[Split, Split]:
    order = list(range(len(train.prompts)))
    random.Random(0).shuffle(order)
    cut = max(1, int(len(order) * HOLDOUT_SHARE))
    if cut >= len(order):
        raise JobFailed("The train split is too small to hold out a validation part; add a validation split.")
    pick = lambda rows: Split([train.prompts[i] for i in rows], [train.labels[i] for i in rows])  # noqa: E731
    return pick(order[cut:]), pick(order[:cut])


def vectorizer() -> HashingVectorizer:
    return HashingVectorizer(n_features=FEATURES, ngram_range=(1, 2), alternate_sign=False, norm="l2",
                             lowercase=True)


def run_internal_job(job_id: int, ctx: JobContext) -> TrainingOutcome:
    """Fit the classifier on the job's train split, scored on its validation split, epoch by epoch."""
    from webapp.training.models import TrainingJob

    job = db.session.get(TrainingJob, job_id)
    params = settings(job.hyperparameters or {})
    train, validation, validation_source = load_splits(job_id)
    classes = np.array(sorted(set(train.labels)))
    if len(classes) < 2:
        raise JobFailed("Every train row has the same completion: there is nothing to learn. "
                        "The internal trainer learns to pick the right completion among several.")
    ctx.report(progress=0.0, message=(
        f"Training on {len(train.prompts):,} rows, validating on {len(validation.prompts):,} "
        f"({validation_source}); {len(classes)} distinct completions"))
    features = vectorizer()
    train_x, validation_x = features.transform(train.prompts), features.transform(validation.prompts)
    train_y, validation_y = np.array(train.labels), np.array(validation.labels)
    known = np.isin(validation_y, classes)
    baseline = round(float(np.mean(validation_y == majority(train.labels))), METRIC_DIGITS)
    model = SGDClassifier(loss="log_loss", learning_rate="constant", eta0=params["learning_rate"],
                          alpha=params["l2"] or 1e-12, random_state=job_id)
    shuffle = np.random.default_rng(job_id)
    epochs, batch = params["epochs"], params["batch_size"]
    metrics: dict[str, float] = {}
    for epoch in range(1, epochs + 1):
        order = shuffle.permutation(train_x.shape[0])
        for number, start in enumerate(range(0, len(order), batch), start=1):
            rows = order[start:start + batch]
            model.partial_fit(train_x[rows], train_y[rows], classes=classes)
            if number % CANCEL_CHECK_BATCHES == 0 and ctx.cancel_requested():
                raise JobCanceled(f"Canceled during epoch {epoch}.")
        metrics = score(model, train_x, train_y, validation_x, validation_y, known, classes)
        ctx.report(progress=epoch / epochs, metrics={"step": epoch, **metrics},
                   message=f"Epoch {epoch}/{epochs}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        if epoch < epochs and ctx.cancel_requested():
            raise JobCanceled(f"Canceled after epoch {epoch}.")
    artifact = save(job_id, model)
    return TrainingOutcome(metrics={**metrics, "baseline_accuracy": baseline}, artifact_uri=artifact)


def majority(labels: list[str]) -> str:
    values, counts = np.unique(labels, return_counts=True)
    return str(values[np.argmax(counts)])


def score(model, train_x, train_y, validation_x, validation_y, known, classes) -> dict[str, float]:
    """Log loss on both splits (over completions seen in training) and validation accuracy (over all rows)."""
    metrics = {"train_loss": float(log_loss(train_y, model.predict_proba(train_x), labels=classes))}
    if known.any():
        metrics["val_loss"] = float(log_loss(validation_y[known], model.predict_proba(validation_x[known]),
                                             labels=classes))
    metrics["val_accuracy"] = float(accuracy_score(validation_y, model.predict(validation_x)))
    return {name: round(value, METRIC_DIGITS) for name, value in metrics.items()}


def save(job_id: int, model: SGDClassifier) -> str:
    """The fitted pipeline (features and classifier) in the artifact store; its URL."""
    buffer = io.BytesIO()
    joblib.dump(Pipeline([("features", vectorizer()), ("classifier", model)]), buffer, compress=3)
    return write_stream(new_key("models", str(job_id), suffix=".joblib"), [buffer.getvalue()]).uri


def load_model(uri: str) -> Pipeline:
    """A model this trainer saved: ``load_model(uri).predict(["a prompt"])``. Only for URIs the console wrote."""
    with open_artifact(uri) as stream:
        return joblib.load(stream)
