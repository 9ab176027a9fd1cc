"""A test upstream that speaks OpenAI's wire format, in a thread on 127.0.0.1:0.

Routes (under /v1): files (multipart create, list, retrieve, content), fine_tuning/jobs
(create, list with after/limit/metadata[k], retrieve, events, checkpoints, cancel,
pause, resume),
chat/completions (JSON, or SSE when `stream` is true) and models. Every request is recorded
(method, path, query, headers, body) so tests can assert what the gateway forwarded.

A job advances one step each time it is retrieved: validating_files, then running (an event
per step, a checkpoint on the second running step), then succeeded. `hold_running = True`
keeps new jobs running until cancelled.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

UPSTREAM_KEY = "sk-upstream-secret"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes


@dataclass
class Job:
    obj: dict
    polls: int = 0
    events: list = field(default_factory=list)  # oldest first
    checkpoints: list = field(default_factory=list)  # oldest first
    hold: bool = False


def _id(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(18)[:24]


def _error(status: int, message: str, typ: str, param=None, code=None) -> tuple[int, dict]:
    return status, {"error": {"message": message, "type": typ, "param": param, "code": code}}


def _page(items_newest_first: list, query: dict) -> dict:
    after = query.get("after")
    limit = int(query.get("limit", "20"))
    items = items_newest_first
    if after is not None:
        ids = [i["id"] for i in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}


class FakeUpstream:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.files: dict[str, tuple[dict, bytes]] = {}
        self.jobs: dict[str, Job] = {}
        self.hold_running = False
        # When set by a test, an SSE response pauses after its first event until the test
        # sets the gate (proof that the gateway streams rather than buffers).
        self.sse_gate: threading.Event | None = None
        self.sse_gate_timed_out = False
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"upstream": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        host, port = self.server.server_address[:2]
        self.base_url = f"http://{host}:{port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeUpstream":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- helpers for tests -------------------------------------------------------------
    def received(self, method: str, path_prefix: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    def uploaded_training_files(self) -> list[bytes]:
        with self.lock:
            return [content for (meta, content) in self.files.values() if meta["purpose"] == "fine-tune"]

    # -- routing -----------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict, headers: dict, body: bytes):
        with self.lock:
            self.requests.append(Recorded(method, path, query, headers, body))
        if headers.get("authorization") != f"Bearer {UPSTREAM_KEY}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error", code="invalid_api_key")
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] != "v1":
            return _error(404, f"Invalid URL ({method} {path})", "invalid_request_error")
        parts = parts[1:]
        with self.lock:
            return self._route(method, parts, query, headers, body)

    def _route(self, method, parts, query, headers, body):
        if parts == ["files"] and method == "POST":
            return self._create_file(headers, body)
        if parts == ["files"] and method == "GET":
            return 200, _page([m for m, _ in reversed(list(self.files.values()))], query)
        if len(parts) >= 2 and parts[0] == "files":
            if parts[1] not in self.files:
                return _error(404, f"No such File object: {parts[1]}", "invalid_request_error", "id")
            meta, content = self.files[parts[1]]
            if len(parts) == 3 and parts[2] == "content":
                return 200, content
            return 200, meta
        if parts == ["models"] and method == "GET":
            return 200, {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "created": 1, "owned_by": "fake"}]}
        if parts == ["chat", "completions"] and method == "POST":
            return self._chat(json.loads(body or b"{}"))
        if parts[:2] == ["fine_tuning", "jobs"]:
            return self._jobs(method, parts[2:], query, body)
        return _error(404, f"Invalid URL ({method} /v1/{'/'.join(parts)})", "invalid_request_error")

    def _create_file(self, headers, body):
        raw = b"Content-Type: " + headers.get("content-type", "").encode() + b"\r\n\r\n" + body
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
        fields, content, filename = {}, None, "file"
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name == "file":
                content = part.get_payload(decode=True)
                filename = part.get_filename() or filename
            else:
                fields[name] = part.get_payload(decode=True).decode()
        if content is None or "purpose" not in fields:
            return _error(400, "file and purpose are required", "invalid_request_error", "file")
        fid = _id("file-")
        meta = {"id": fid, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                "filename": filename, "purpose": fields["purpose"], "status": "processed"}
        self.files[fid] = (meta, content)
        return 200, meta

    def _jobs(self, method, rest, query, body):
        if not rest and method == "POST":
            req = json.loads(body)
            if req.get("training_file") not in self.files:
                return _error(400, f"invalid training_file: {req.get('training_file')}", "invalid_request_error", "training_file")
            jid = _id("ftjob-")
            hp = (req.get("method") or {}).get("supervised", {}).get("hyperparameters", {})
            obj = {"id": jid, "object": "fine_tuning.job", "created_at": int(time.time()), "error": None,
                   "fine_tuned_model": None, "finished_at": None,
                   "hyperparameters": {"batch_size": hp.get("batch_size", "auto"),
                                       "learning_rate_multiplier": hp.get("learning_rate_multiplier", "auto"),
                                       "n_epochs": hp.get("n_epochs", "auto")},
                   "model": req["model"], "organization_id": "org-fake", "result_files": [],
                   "seed": req.get("seed", 42), "status": "validating_files", "trained_tokens": None,
                   "training_file": req["training_file"], "validation_file": req.get("validation_file"),
                   "metadata": req.get("metadata"), "method": req.get("method")}
            job = Job(obj=obj, hold=self.hold_running)
            self._event(job, "Validating training file")
            self.jobs[jid] = job
            return 200, obj
        if not rest and method == "GET":
            wanted = {k[len("metadata["):-1]: v for k, v in query.items() if k.startswith("metadata[")}
            objs = [j.obj for j in reversed(list(self.jobs.values()))
                    if all((j.obj.get("metadata") or {}).get(k) == v for k, v in wanted.items())]
            return 200, _page(objs, query)
        job = self.jobs.get(rest[0])
        if job is None:
            return _error(404, f"No such FineTuningJob object: {rest[0]}", "invalid_request_error", "id")
        tail = rest[1:]
        if tail == [] and method == "GET":
            self._advance(job)
            return 200, job.obj
        if tail == ["events"]:
            return 200, _page(list(reversed(job.events)), query)
        if tail == ["checkpoints"]:
            return 200, _page(list(reversed(job.checkpoints)), query)
        if tail == ["cancel"] and method == "POST":
            if job.obj["status"] in ("succeeded", "failed", "cancelled"):
                return _error(400, f"Job {rest[0]} has already completed", "invalid_request_error")
            job.obj["status"] = "cancelled"
            self._event(job, "Job cancelled")
            return 200, job.obj
        if tail in (["pause"], ["resume"]) and method == "POST":
            want_from, to = ("running", "paused") if tail == ["pause"] else ("paused", "running")
            if job.obj["status"] != want_from:
                return _error(400, f"Job {rest[0]} is {job.obj['status']}, not {want_from}", "invalid_request_error")
            job.obj["status"] = to
            self._event(job, f"Job {to}")
            return 200, job.obj
        return _error(404, "Invalid URL", "invalid_request_error")

    def _event(self, job: Job, message: str, data=None):
        job.events.append({"id": _id("ftevent-"), "object": "fine_tuning.job.event",
                           "created_at": int(time.time()), "level": "info", "message": message,
                           "type": "metrics" if data else "message", "data": data})

    def _advance(self, job: Job) -> None:
        obj = job.obj
        if obj["status"] in ("succeeded", "failed", "cancelled", "paused"):
            return
        job.polls += 1
        if obj["status"] == "validating_files":
            obj["status"] = "running"
            # As OpenAI does once a job starts: every "auto" becomes the value it chose.
            chosen = {"batch_size": 1, "learning_rate_multiplier": 1.8, "n_epochs": 3}
            obj["hyperparameters"] = {k: (chosen[k] if v == "auto" else v)
                                      for k, v in obj["hyperparameters"].items()}
            self._event(job, "Fine-tuning job started")
        elif obj["status"] == "running":
            step = len(job.checkpoints) + 1
            self._event(job, f"Step {step}/2: training loss=0.5", {"step": step, "train_loss": 0.5})
            job.checkpoints.append({
                "id": _id("ftckpt-"), "object": "fine_tuning.job.checkpoint", "created_at": int(time.time()),
                "fine_tuned_model_checkpoint": f"ft:{obj['model']}:fake::ckpt-step-{step}",
                "fine_tuning_job_id": obj["id"], "step_number": step,
                "metrics": {"step": step, "train_loss": 0.5, "train_mean_token_accuracy": 0.8}})
            if step >= 2 and not job.hold:
                obj["status"] = "succeeded"
                obj["fine_tuned_model"] = f"ft:{obj['model']}:fake::{obj['id'][-8:]}"
                obj["finished_at"] = int(time.time())
                obj["trained_tokens"] = 1234
                self._event(job, "The job has successfully completed")

    def _chat(self, req: dict):
        last = (req.get("messages") or [{}])[-1].get("content", "")
        reply = f"echo: {last}"
        cid = _id("chatcmpl-")
        if not req.get("stream"):
            return 200, {"id": cid, "object": "chat.completion", "created": int(time.time()),
                         "model": req.get("model"),
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": reply}}],
                         "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}
        chunks = []
        for i, word in enumerate(reply.split(" ")):
            piece = word if i == 0 else " " + word
            chunks.append({"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                           "model": req.get("model"),
                           "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
        chunks.append({"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                       "model": req.get("model"), "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        return 200, _Sse(chunks)


class _Sse:
    def __init__(self, chunks: list[dict]) -> None:
        self.chunks = chunks


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    upstream: FakeUpstream

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, payload = self.upstream.handle(method, url.path, query, headers, body)
        if isinstance(payload, _Sse):
            self.send_response(status)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.send_header("x-request-id", "req_upstream")
            self.end_headers()
            for i, c in enumerate(payload.chunks + ["[DONE]"]):
                data = c if isinstance(c, str) else json.dumps(c)
                frame = f"data: {data}\n\n".encode()
                self.wfile.write(f"{len(frame):x}\r\n".encode() + frame + b"\r\n")
                self.wfile.flush()
                gate = self.upstream.sse_gate
                if i == 0 and gate is not None and not gate.wait(timeout=10):
                    self.upstream.sse_gate_timed_out = True
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return
        if isinstance(payload, bytes):
            out, ctype = payload, "application/octet-stream"
        else:
            out, ctype = json.dumps(payload).encode(), "application/json"
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(out)))
        self.send_header("x-request-id", "req_upstream")
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")
