"""Dataset uploads as services: stored and validated, or refused leaving nothing; delete, approval, catalogue."""
from __future__ import annotations

import hashlib
import io
from datetime import timedelta

import fsspec
import pytest
from sqlalchemy import select

from tests.datasets.conftest import stored_files
from tests.factories import (
    jsonl_rows, make_ai_model, make_dataset, make_plan, make_subscription, make_training_job, make_user,
)
from webapp.accounts.models import AuditEvent
from webapp.artifacts import artifact_exists, open_artifact
from webapp.datasets import services
from webapp.datasets.models import Dataset
from webapp.db import utcnow
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


def test_the_size_limit_is_the_plans_and_never_unlimited(app, db_session):
    capped, lifted = make_user(), make_user()
    make_subscription(capped, make_plan(quotas={"dataset_bytes": 1234}))
    make_subscription(lifted, make_plan(quotas={"dataset_bytes": None}))
    assert services.size_limit(capped) == 1234
    assert services.size_limit(lifted) == app.config["DATASET_MAX_BYTES"] > 1234, "a lifted limit is the server's"


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


def test_a_preview_shows_the_first_rows_as_the_trainers_read_them_each_problem_on_its_line(app, db_session, store):
    too_long = b'{"prompt": "' + b"x" * app.config["DATASET_MAX_ROW_CHARS"] + b'", "completion": "y"}\n'
    dataset = make_dataset(make_user(), content=jsonl_rows(2) + b"not json\n" + too_long + jsonl_rows(30))
    rows = services.preview(dataset)
    assert [row.line for row in rows] == list(range(1, services.PREVIEW_ROWS + 1))
    assert [(row.example is not None, row.problem.line if row.problem else None) for row in rows[:5]] == [
        (True, None), (True, None), (False, 3), (False, 4), (True, None),
    ]
    assert (rows[0].example.prompt, rows[0].example.completion) == ("Hi 1", "Hello 1")
    assert [row.line for row in services.preview(dataset, rows=2)] == [1, 2]


def test_a_preview_of_a_file_the_store_cannot_read_is_none_and_logged(db_session, store, caplog):
    dataset = make_dataset(make_user())
    dataset.uri = "file:///nonexistent/elsewhere.jsonl"
    assert services.preview(dataset) is None
    assert f"dataset {dataset.id}: cannot read file:///nonexistent/elsewhere.jsonl" in caplog.messages


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


def test_the_jobs_that_used_a_dataset_are_listed_newest_first_with_their_split(db_session, store):
    user = make_user()
    dataset, other = make_dataset(user), make_dataset(user)
    day_ago = utcnow() - timedelta(days=1)
    first, second, third = (make_training_job(user, queued_at=day_ago) for _ in range(3))
    older = make_training_job(user, queued_at=day_ago - timedelta(days=1))  # made last, queued first
    elsewhere = make_training_job(user)
    db_session.add_all([TrainingJobDataset(training_job_id=job.id, dataset_id=dataset.id, split=split)
                        for job, split in ((second, "validation"), (older, "train"), (third, "train"),
                                           (first, "train"))])
    db_session.add(TrainingJobDataset(training_job_id=elsewhere.id, dataset_id=other.id, split="train"))
    db_session.flush()
    assert [(job.id, split) for job, split in services.jobs_using(dataset)] == [
        (third.id, "train"), (second.id, "validation"), (first.id, "train"), (older.id, "train"),
    ], "newest first, the later job first at the same time, and only this dataset's"
    assert [job.id for job, _ in services.jobs_using(dataset, limit=2)] == [third.id, second.id]


def test_at_most_the_50_latest_jobs_that_used_a_dataset_are_listed(db_session, store):
    user, model = make_user(), make_ai_model()
    dataset = make_dataset(user)
    jobs = [make_training_job(user, base_model_id=model.id) for _ in range(51)]
    db_session.add_all(TrainingJobDataset(training_job_id=job.id, dataset_id=dataset.id, split="train") for job in jobs)
    db_session.flush()
    assert [job.id for job, _ in services.jobs_using(dataset)] == [job.id for job in reversed(jobs[1:])]


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


def test_who_sees_which_dataset_and_who_may_download_it(db_session, store):
    owner, other, staff = make_user(), make_user(), make_user("admin")
    private, awaiting = make_dataset(owner), make_dataset(owner, visibility="public")
    approved = make_dataset(owner, visibility="public", approved_at=utcnow())
    platform, platform_private = make_dataset(None, visibility="public"), make_dataset(None)
    every = [private, awaiting, approved, platform, platform_private]

    def seen(user):
        return [dataset for dataset in every if services.viewable_dataset(user, dataset.id) is dataset]

    assert seen(owner) == [private, awaiting, approved, platform]
    assert seen(other) == [approved, platform], "the catalogue: public platform datasets and approved ones"
    assert seen(staff) == every
    assert services.viewable_dataset(staff, platform_private.id + 1) is None
    assert [d for d in every if services.may_download(owner, d)] == [private, awaiting, approved]
    assert [d for d in every if services.may_download(other, d)] == []
    assert [d for d in every if services.may_download(staff, d)] == every
    assert [services.owned_dataset(owner, d.id) for d in every] == [private, awaiting, approved, None, None]
    assert services.owned_dataset(other, private.id) is None


def test_my_datasets_are_listed_newest_first_and_only_mine(db_session, store):
    owner, moment = make_user(), utcnow()
    first, second = make_dataset(owner, created_at=moment), make_dataset(owner, created_at=moment)  # a tie: newest id first
    backdated = make_dataset(owner, created_at=utcnow() - timedelta(days=1))
    make_dataset(make_user())
    page = services.owned_datasets(owner, 1, 2)
    assert (page.items, page.has_next) == ([second, first], True)
    assert services.owned_datasets(owner, 2, 2).items == [backdated]


def test_the_catalogue_is_searched_in_names_and_descriptions_and_listed_by_name(db_session, store):
    # The namesakes are stored higher id first: only the id tie-break lists them in id order on PostgreSQL.
    namesake = make_dataset(None, visibility="public", name="Recipes", description="Kitchen", id=10**9)
    approved = make_dataset(make_user(), visibility="public", approved_at=utcnow(), name="Recipes",
                            description="Cooking STEPS_1", id=10**9 - 1)
    atlas = make_dataset(None, visibility="public", name="Atlas 50%", description="Maps of the world")

    def found(query, page=1, per_page=20):
        return [dataset.id for dataset in services.catalogue(query, page, per_page).items]

    assert found("") == [atlas.id, approved.id, namesake.id], "by name, then the lower id first"
    assert found("", 2, 2) == [namesake.id]
    assert found("steps_1") == [approved.id] and found("stepsx1") == [], "any case; _ is itself"
    assert found("50%") == [atlas.id] and found("atlas") == [atlas.id] and found("kitchen") == [namesake.id]


def test_split_suggestion():
    assert services.split_suggestion(5) == services.SplitSuggestion(5, 0)
    assert services.split_suggestion(10) == services.SplitSuggestion(9, 1)
    assert services.split_suggestion(1001) == services.SplitSuggestion(901, 100)
