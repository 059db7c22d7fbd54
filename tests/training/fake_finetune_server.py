"""A local HTTP server speaking OpenAI's fine-tuning wire format; nothing leaves the machine.

It serves ``/v1/files`` (multipart upload), ``/v1/fine_tuning/jobs`` (create), ``/{id}``
(retrieve), ``/{id}/cancel`` and ``/{id}/events`` (newest first, paged with ``after`` and
``limit``, ``has_more``), and answers 401 echoing any key but GOOD_KEY, as real providers do.

A job moves one step each time it is retrieved, so a test drives it by polling. What
happens depends on the base model asked for:
- ``fake-small``: validating_files, queued, then running with a burst of metric events
  (more than one page) per poll, then succeeded with a fine-tuned model id;
- ``fake-broken``: fails while validating files, with an error message;
- ``fake-forever``: keeps running (and logging) until it is cancelled.
A training file that is not chat JSONL fails validation with the line at fault, as the real API does.
Setting ``state.outages`` makes that many job retrievals answer 503.
"""
from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fake_http import JSONHandler, LocalServer

GOOD_KEY = "sk-test-FineTune0123456789abcdefQRST"
SUCCEEDS, FAILS, RUNS_FOREVER = "fake-small", "fake-broken", "fake-forever"
FAILURE_MESSAGE = "The job failed due to an invalid training file. Expected file to have at least 10 examples."
TOTAL_STEPS = 24
STEPS_PER_POLL = 12  # one poll's burst is longer than a page, so paging must be followed
MAX_PAGE_SIZE = 5  # the server caps ``limit`` like real APIs do
DEFAULT_PAGE_SIZE = 20


@dataclass
class FakeJob:
    id: str
    model: str
    training_file: str
    validation_file: str | None
    hyperparameters: dict[str, Any]
    suffix: str | None
    created_at: int
    status: str = "validating_files"
    step: int = 0
    polls: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    error: dict[str, Any] | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None

    def document(self) -> dict[str, Any]:
        return {
            "object": "fine_tuning.job", "id": self.id, "model": self.model, "created_at": self.created_at,
            "finished_at": self.finished_at, "fine_tuned_model": self.fine_tuned_model,
            "organization_id": "org-fake", "result_files": [], "status": self.status,
            "validation_file": self.validation_file, "training_file": self.training_file,
            "hyperparameters": self.hyperparameters, "trained_tokens": 4_800 if self.status == "succeeded" else None,
            "error": self.error, "seed": 42, "estimated_finish": None, "integrations": [], "metadata": None,
            "method": {"type": "supervised", "supervised": {"hyperparameters": self.hyperparameters}},
        }


class FakeFineTuneState:
    """Everything the server holds, shared by its request threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.files: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, FakeJob] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path with query, headers)
        self.outages = 0  # the next this many job retrievals answer 503, as an overloaded provider does

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self.ids):06d}"

    def add_event(self, job: FakeJob, message: str, level: str = "info", data: dict | None = None) -> None:
        job.events.append({
            "object": "fine_tuning.job.event", "id": self.new_id("ftevent"), "created_at": int(time.time()),
            "level": level, "message": message, "data": data or {}, "type": "metrics" if data else "message",
        })

    def advance(self, job: FakeJob) -> None:
        """One step of the job's life, taken on each retrieve."""
        job.polls += 1
        if job.status in ("succeeded", "failed", "cancelled"):
            return
        if job.status == "validating_files":
            problem = FAILURE_MESSAGE if job.model == FAILS else self.training_file_problem(job.training_file)
            if problem:
                job.status, job.finished_at = "failed", int(time.time())
                job.error = {"code": "invalid_training_file", "message": problem, "param": "training_file"}
                self.add_event(job, problem, level="error")
                return
            job.status = "queued"
            self.add_event(job, "Files validated, moving job to queued state")
        elif job.status == "queued":
            job.status = "running"
            self.add_event(job, f"Fine-tuning job started on {job.model}")
        elif job.model == RUNS_FOREVER:
            self.add_event(job, f"Still training (poll {job.polls})")
        else:
            self.run_steps(job)

    def run_steps(self, job: FakeJob) -> None:
        for _ in range(STEPS_PER_POLL):
            if job.step == TOTAL_STEPS:
                break
            job.step += 1
            loss = round(2.0 / job.step, 4)
            data = {"step": job.step, "total_steps": TOTAL_STEPS, "train_loss": loss,
                    "train_mean_token_accuracy": round(1 - loss / 4, 4)}
            if job.validation_file and job.step % 6 == 0:
                data["valid_loss"] = round(loss * 1.1, 4)
            self.add_event(job, f"Step {job.step}/{TOTAL_STEPS}: training loss={loss}", data=data)
        if job.step == TOTAL_STEPS:
            job.status, job.finished_at = "succeeded", int(time.time())
            job.fine_tuned_model = f"ft:{job.model}:fake-org:{job.suffix or 'custom'}:{job.id[-6:]}"
            self.add_event(job, f"New fine-tuned model created: {job.fine_tuned_model}")
            self.add_event(job, "The job has successfully completed")

    def training_file_problem(self, file_id: str) -> str | None:
        file = self.files.get(file_id)
        if file is None:
            return f"File {file_id} not found."
        lines = file["content"].decode("utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            try:
                messages = json.loads(line)["messages"]
                roles = {message["role"] for message in messages}
            except (ValueError, KeyError, TypeError):
                return f"Invalid file format. Line {number} is not a chat example."
            if "assistant" not in roles:
                return f"Invalid file format. Line {number} has no assistant message."
        return None if lines else "The training file is empty."


class FakeFineTuneHandler(JSONHandler):
    server: ThreadingHTTPServer

    @property
    def state(self) -> FakeFineTuneState:
        return self.server.state

    def do_GET(self) -> None:  # noqa: N802  (the http.server hook's name)
        self.dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self.dispatch("POST")

    def dispatch(self, method: str) -> None:
        self.state.requests.append((method, self.path, dict(self.headers)))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        given = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if given != GOOD_KEY:
            self.reply(401, {"error": {
                "message": f"Incorrect API key provided: {given}. You can find your API key at "
                           "https://platform.example/account/api-keys.",
                "type": "invalid_request_error", "code": "invalid_api_key",
            }})
            return
        url = urlsplit(self.path)
        parts = url.path.removeprefix("/v1/").strip("/").split("/")
        query = {name: values[-1] for name, values in parse_qs(url.query).items()}
        with self.state.lock:
            if method == "POST" and parts == ["files"]:
                self.upload(body)
            elif method == "POST" and parts == ["fine_tuning", "jobs"]:
                self.create_job(json.loads(body or b"{}"))
            elif parts[:2] == ["fine_tuning", "jobs"] and len(parts) >= 3 and parts[2] in self.state.jobs:
                self.job_action(method, self.state.jobs[parts[2]], parts[3:], query)
            else:
                self.reply(404, {"error": {"message": f"Unknown path {url.path}", "type": "invalid_request_error"}})

    def upload(self, body: bytes) -> None:
        fields = multipart_fields(self.headers.get("Content-Type", ""), body)
        if "file" not in fields or fields.get("purpose", (None, b""))[1] != b"fine-tune":
            self.reply(400, {"error": {"message": "Upload a 'file' with purpose 'fine-tune'."}})
            return
        filename, content = fields["file"]
        file_id = self.state.new_id("file")
        self.state.files[file_id] = {"filename": filename, "content": content}
        self.reply(200, {"object": "file", "id": file_id, "bytes": len(content), "created_at": int(time.time()),
                         "filename": filename, "purpose": "fine-tune", "status": "processed"})

    def create_job(self, spec: dict[str, Any]) -> None:
        missing = [name for name in ("model", "training_file") if not spec.get(name)]
        unknown = [spec[name] for name in ("training_file", "validation_file")
                   if spec.get(name) and spec[name] not in self.state.files]
        if missing or unknown:
            problem = f"Missing {', '.join(missing)}." if missing else f"File {unknown[0]} not found."
            self.reply(400, {"error": {"message": problem, "type": "invalid_request_error"}})
            return
        method = spec.get("method") or {}
        hyperparameters = (method.get("supervised") or {}).get("hyperparameters") or spec.get("hyperparameters") or {}
        job = FakeJob(
            id=self.state.new_id("ftjob"), model=spec["model"], training_file=spec["training_file"],
            validation_file=spec.get("validation_file"), suffix=spec.get("suffix"), created_at=int(time.time()),
            hyperparameters={"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto",
                             **hyperparameters},
        )
        self.state.jobs[job.id] = job
        self.state.add_event(job, f"Created fine-tuning job: {job.id}")
        self.state.add_event(job, f"Validating training file: {job.training_file}")
        self.reply(200, job.document())

    def job_action(self, method: str, job: FakeJob, rest: list[str], query: dict[str, str]) -> None:
        if method == "GET" and not rest and self.state.outages:
            self.state.outages -= 1
            self.reply(503, {"error": {"message": "The server is overloaded. Please try again later.",
                                       "type": "server_error"}})
        elif method == "GET" and not rest:
            self.state.advance(job)
            self.reply(200, job.document())
        elif method == "POST" and rest == ["cancel"]:
            if job.status in ("succeeded", "failed", "cancelled"):
                self.reply(400, {"error": {"message": f"Job {job.id} has already {job.status}.",
                                           "type": "invalid_request_error"}})
                return
            job.status, job.finished_at = "cancelled", int(time.time())
            self.state.add_event(job, "Fine-tuning job cancelled")
            self.reply(200, job.document())
        elif method == "GET" and rest == ["events"]:
            self.reply(200, events_page(job, query))
        else:
            self.reply(404, {"error": {"message": "Unknown path"}})


def events_page(job: FakeJob, query: dict[str, str]) -> dict[str, Any]:
    """Newest first; ``after`` is the last id of the previous page, so each page is older."""
    newest_first = list(reversed(job.events))
    if "after" in query:
        ids = [event["id"] for event in newest_first]
        newest_first = newest_first[ids.index(query["after"]) + 1:] if query["after"] in ids else []
    limit = min(int(query.get("limit", DEFAULT_PAGE_SIZE)), MAX_PAGE_SIZE)
    return {"object": "list", "data": newest_first[:limit], "has_more": len(newest_first) > limit}


def multipart_fields(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The form's fields as name -> (filename, bytes), parsed by the standard library's MIME parser."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    if not message.is_multipart():
        return {}
    return {
        part.get_param("name", header="content-disposition"): (part.get_filename(), part.get_payload(decode=True))
        for part in message.iter_parts()
    }


class FakeFineTuneServer(LocalServer):
    """``with FakeFineTuneServer() as server: server.url("/v1")``."""

    def __init__(self) -> None:
        super().__init__(FakeFineTuneHandler)
        self.server.state = FakeFineTuneState()

    @property
    def state(self) -> FakeFineTuneState:
        return self.server.state
