"""Dataset uploads as services: stored and validated, or refused leaving nothing; delete, approval, catalogue."""
from __future__ import annotations

import hashlib
import io

import fsspec
import pytest
from sqlalchemy import select

from tests.datasets.conftest import stored_files
from tests.factories import (
    jsonl_rows, make_dataset, make_plan, make_subscription, make_training_job, make_user,
)
from webapp.accounts.models import AuditEvent
from webapp.artifacts import artifact_exists, open_artifact
from webapp.datasets import services
from webapp.datasets.models import Dataset
from webapp.quotas import QuotaExceeded
from webapp.training.models import TrainingJobDataset

BAD_LINES = (jsonl_rows(2) + b'{"prompt": "no completion"}\n' + jsonl_rows(1) + b"not json\n")


def upload(owner, content: bytes, name: str = "Greetings", filename: str = "greetings.jsonl",
           max_bytes: int = 1_000_000, visibility: str = "private"):
    return services.upload_dataset(owner, name, "Hello rows", visibility, filename, [content[:7], content[7:]],
                                   max_bytes, actor=owner)


def streamed(content: bytes, read: list, meanwhile=lambda: None):
    """The file as one chunk; reading it notes so in ``read`` and first runs ``meanwhile`` (another request's work)."""
    read.append(True)
    meanwhile()
    yield content


def test_a_good_file_is_stored_with_checksum_size_and_rows(db_session, store):
    user = make_user()
    content = jsonl_rows(12)
    outcome = upload(user, content)
    dataset = outcome.dataset
    assert (dataset.row_count, dataset.size_bytes, dataset.format) == (12, len(content), "jsonl")
    assert dataset.checksum == "sha256:" + hashlib.sha256(content).hexdigest()
    assert dataset.uri.startswith("file://") and dataset.slug == "greetings"
    with open_artifact(dataset.uri) as stream:
        assert stream.read() == content
    assert db_session.scalar(select(AuditEvent.action).where(AuditEvent.object_type == "datasets",
                                                             AuditEvent.object_id == dataset.id)) == "dataset.create"


def test_an_upload_keeps_the_forms_fields_and_audits_them_for_the_actor(db_session, store):
    owner, staff = make_user(), make_user("admin")
    content = jsonl_rows(4)
    dataset = services.upload_dataset(owner, "Café Poems", "Four rows", "public", "poems.jsonl", [content],
                                      1_000_000, actor=staff).dataset
    assert (dataset.owner_user_id, dataset.name, dataset.slug, dataset.description, dataset.visibility,
            dataset.tags) == (owner.id, "Café Poems", "cafe-poems", "Four rows", "public", [])
    assert f"/datasets/{owner.id}/" in dataset.uri and dataset.uri.endswith(".jsonl")
    audit = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "dataset.create")).one()
    assert (audit.object_type, audit.object_id, audit.actor_id) == ("datasets", dataset.id, staff.id)
    assert audit.changes == {"name": "Café Poems", "visibility": "public", "format": "jsonl",
                             "size_bytes": len(content), "rows": 4, "sha256": hashlib.sha256(content).hexdigest()}


def test_a_platform_dataset_is_stored_under_the_platform_folder(db_session, store):
    dataset = services.upload_dataset(None, "Shared pairs", "", "public", "pairs.csv", [b"prompt,completion\nHi,Yo\n"],
                                      1_000_000, actor=make_user("admin")).dataset
    assert dataset.owner_user_id is None and dataset.format == "csv"
    assert "/datasets/platform/" in dataset.uri and dataset.uri.endswith(".csv")


def test_a_slug_is_the_name_in_lowercase_ascii_words_joined_by_hyphens():
    assert services.slugify("  Café Poèmes: vol. 2! ") == "cafe-poemes-vol-2"
    assert services.slugify("東京 ✨") == "dataset", "a name with no letters to spell it gets a word"
    assert services.slugify("a" * 300) == "a" * 180


def test_a_file_with_problems_leaves_no_bytes_and_no_row(db_session, store):
    user = make_user()
    outcome = upload(user, BAD_LINES)
    assert outcome.dataset is None
    assert outcome.report.rows_accepted == 3 and outcome.report.problem_count == 2
    assert [problem.line for problem in outcome.report.problems] == [3, 5]
    assert stored_files(store) == []
    assert db_session.scalar(select(Dataset.id).where(Dataset.owner_user_id == user.id)) is None


def test_an_upload_is_read_in_chunks_of_64_kib():
    chunks = services.file_chunks(io.BytesIO(b"x" * (2 * 65536 + 10)))
    assert [len(chunk) for chunk in chunks] == [65536, 65536, 10]


def test_a_file_past_the_size_limit_leaves_nothing(db_session, store):
    user = make_user()
    with pytest.raises(services.DatasetError) as refused:
        upload(user, jsonl_rows(50), max_bytes=1000)
    assert str(refused.value) == "The file is larger than the 1,000 bytes your plan allows."
    assert (refused.value.status, refused.value.field) == (413, "file")
    assert stored_files(store) == []


def test_unknown_file_types_and_taken_names_are_refused(db_session, store):
    user = make_user()
    with pytest.raises(services.DatasetError) as refused:
        upload(user, jsonl_rows(1), filename="notes.txt")
    assert str(refused.value) == "Upload a .jsonl (or .json lines) or a .csv file."
    assert refused.value.field == "file"
    assert refused.value.status == 422, "a refusal that names no status is unprocessable input"
    upload(user, jsonl_rows(1), name="Greetings")
    with pytest.raises(services.DatasetError, match="already have a dataset"):
        upload(user, jsonl_rows(1), name="greetings!")
    assert len(stored_files(store)) == 1


def test_a_taken_name_is_refused_before_the_file_is_read_and_only_among_the_owners_own(db_session, store):
    user, other = make_user(), make_user()
    upload(other, jsonl_rows(1), name="Greetings")
    upload(user, jsonl_rows(1), name="Farewells")
    read = []
    with pytest.raises(services.DatasetError, match="already have a dataset named “Farewells”") as refused:
        services.upload_dataset(user, "Farewells", "", "private", "f.jsonl", streamed(jsonl_rows(1), read),
                                1_000_000, actor=user)
    assert refused.value.field == "name" and read == [], "refused before a byte of the file is read"
    mine = upload(user, jsonl_rows(1), name="Greetings").dataset  # another owner's name is free for her
    assert (mine.owner_user_id, mine.slug) == (user.id, "greetings")


def test_the_datasets_quota_is_checked_before_the_file_is_read_and_again_before_the_insert(db_session, store):
    user = make_user()
    make_subscription(user, make_plan(quotas={"datasets": 2}))
    upload(user, jsonl_rows(1), name="One")
    read = []
    with pytest.raises(QuotaExceeded) as refused:  # the second dataset came while this file streamed in
        services.upload_dataset(user, "Three", "", "private", "three.jsonl",
                                streamed(jsonl_rows(1), read, lambda: make_dataset(user, name="Two")), 1_000_000,
                                actor=user)
    assert (refused.value.key, refused.value.limit, read) == ("datasets", 2, [True])
    read.clear()
    with pytest.raises(QuotaExceeded):
        services.upload_dataset(user, "Three", "", "private", "three.jsonl", streamed(jsonl_rows(1), read),
                                1_000_000, actor=user)
    assert read == [], "refused before a byte of the file is read"
    assert db_session.scalars(select(Dataset.name).where(Dataset.owner_user_id == user.id)).all() == ["One", "Two"]
    assert len(stored_files(store)) == 2


def test_a_name_taken_while_the_file_streams_in_is_refused_and_its_bytes_go(db_session, store):
    user = make_user()
    with pytest.raises(services.DatasetError) as refused:  # a dataset of that slug came while this file streamed in
        services.upload_dataset(user, "Greetings", "", "private", "g.jsonl",
                                streamed(jsonl_rows(1), [], lambda: make_dataset(user, slug="greetings")), 1_000_000,
                                actor=user)
    assert str(refused.value) == ("You already have a dataset named “Greetings” (or one that differs only in "
                                  "punctuation or case); choose another name or delete that one first.")
    assert refused.value.field == "name"
    assert len(stored_files(store)) == 1, "only the other upload's file is left"


def test_a_csv_file_is_read_too(db_session, store):
    outcome = upload(make_user(), b"prompt,completion\nHi,Hello\n\"Multi\nline\",Yes\n", filename="pairs.csv")
    assert outcome.dataset.format == "csv" and outcome.dataset.row_count == 2
    assert [row.example.completion for row in services.preview(outcome.dataset)] == ["Hello", "Yes"]


def test_a_memory_filesystem_stands_in_for_a_remote_store(app, db_session):
    previous = app.config["ARTIFACT_STORE_URL"]
    app.config["ARTIFACT_STORE_URL"] = "memory://remote-datasets"
    try:
        user = make_user()
        dataset = upload(user, jsonl_rows(3)).dataset
        assert dataset.uri.startswith("memory://") and "/remote-datasets/datasets/" in dataset.uri
        assert [row.line for row in services.preview(dataset)] == [1, 2, 3]
        refused = upload(user, BAD_LINES, name="Broken")
        assert refused.dataset is None
        assert len(fsspec.filesystem("memory").find("/remote-datasets")) == 1
        services.delete_dataset(dataset, user)
    finally:
        fsspec.filesystem("memory").rm("/remote-datasets", recursive=True)
        app.config["ARTIFACT_STORE_URL"] = previous


def test_delete_is_refused_while_a_job_uses_it_and_keeps_finished_jobs(db_session, store):
    user, staff = make_user(), make_user("admin")
    dataset, other = make_dataset(user), make_dataset(user, name="Another")
    make_training_job(user, status="running")  # uses nothing
    busy_elsewhere = make_training_job(user, status="queued")  # an active job, of the other dataset
    job, later = make_training_job(user, status="running"), make_training_job(user, status="queued")
    db_session.add_all([TrainingJobDataset(training_job_id=busy_elsewhere.id, dataset_id=other.id, split="train"),
                        TrainingJobDataset(training_job_id=later.id, dataset_id=dataset.id, split="validation"),
                        TrainingJobDataset(training_job_id=job.id, dataset_id=dataset.id, split="train")])
    db_session.flush()
    with pytest.raises(services.DatasetError, match=f"#{job.id} is using") as refused:
        services.delete_dataset(dataset, user)
    assert refused.value.status == 409
    job.status = later.status = "succeeded"
    db_session.flush()
    name, size = dataset.name, dataset.size_bytes
    uri = services.delete_dataset(dataset, staff)
    assert uri == dataset.uri and artifact_exists(uri)  # removed by the caller once committed
    audit = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "dataset.delete")).one()
    assert (audit.object_type, audit.object_id, audit.actor_id) == ("datasets", dataset.id, staff.id)
    assert audit.changes == {"name": name, "uri": uri, "size_bytes": size}
    link = db_session.scalar(select(TrainingJobDataset).where(TrainingJobDataset.training_job_id == job.id))
    db_session.refresh(link)
    assert link.dataset_id is None and link.split == "train"


def test_public_datasets_join_the_catalogue_once_approved(db_session, store):
    user, staff = make_user(), make_user("admin")
    public = make_dataset(user, visibility="public", name="Poems 100%")
    make_dataset(user, visibility="private", name="Poems private")
    platform = make_dataset(None, visibility="public", name="Platform poems")
    assert public.review_state == "awaiting approval"
    names = [d.name for d in services.catalogue("poems", 1, 20).items]
    assert "Platform poems" in names and "Poems 100%" not in names
    assert services.approve_dataset(public, staff) and not services.approve_dataset(public, staff)
    assert not services.approve_dataset(platform, staff)
    (approval,) = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "dataset.approve"))
    assert (approval.object_type, approval.object_id, approval.actor_id) == ("datasets", public.id, staff.id)
    assert approval.changes == {"approved_at": [None, public.approved_at.isoformat()]}
    assert public.review_state == "public"
    # LIKE's wildcards are searched for as themselves.
    assert [d.name for d in services.catalogue("100%", 1, 20).items] == ["Poems 100%"]
    assert services.catalogue("poems_", 1, 20).items == []


def test_split_suggestion():
    assert services.split_suggestion(5) == services.SplitSuggestion(5, 0)
    assert services.split_suggestion(10) == services.SplitSuggestion(9, 1)
    assert services.split_suggestion(1001) == services.SplitSuggestion(901, 100)
