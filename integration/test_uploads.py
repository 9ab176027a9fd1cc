"""Uploads API (large files in parts) through the openai SDK."""

import hashlib
import io
import json
import os

import openai
import pytest


def big_jsonl(min_bytes: int) -> bytes:
    out, i = io.BytesIO(), 0
    while out.tell() < min_bytes:
        out.write((json.dumps({"messages": [
            {"role": "user", "content": f"question {i} " + "x" * 200},
            {"role": "assistant", "content": f"answer {i} " + "y" * 200}]}) + "\n").encode())
        i += 1
    return out.getvalue()


def test_chunked_upload_round_trips(gateway, tmp_path):
    c = gateway.client()
    data = big_jsonl(3 * 1024 * 1024 + 12345)
    path = tmp_path / "big.jsonl"
    path.write_bytes(data)
    up = c.uploads.upload_file_chunked(file=path, mime_type="application/jsonl",
                                       purpose="fine-tune", part_size=256 * 1024)
    assert up.status == "completed" and up.file is not None
    assert up.file.bytes == len(data) and up.file.filename == "big.jsonl"
    assert c.files.content(up.file.id).read() == data
    assert up.file.id in [f.id for f in c.files.list()]


def test_complete_uses_part_ids_order_and_checks_md5(gateway):
    c = gateway.client()
    a, b = b'{"messages": [{"role": "user", "content": "a"}, ', b'{"role": "assistant", "content": "b"}]}\n'
    up = c.uploads.create(bytes=len(a) + len(b), filename="two.jsonl",
                          mime_type="application/jsonl", purpose="fine-tune")
    assert up.id.startswith("upload_") and up.status == "pending"
    # Parts are sent out of order; complete's part_ids order decides the content.
    pb = c.uploads.parts.create(up.id, data=b)
    pa = c.uploads.parts.create(up.id, data=a)
    assert pa.id.startswith("part_") and pa.upload_id == up.id
    with pytest.raises(openai.BadRequestError):
        c.uploads.complete(up.id, part_ids=[pa.id, pb.id], md5="0" * 32)
    done = c.uploads.complete(up.id, part_ids=[pa.id, pb.id], md5=hashlib.md5(a + b).hexdigest())
    assert done.status == "completed"
    assert c.files.content(done.file.id).read() == a + b


def test_expires_after_reaches_the_completed_file_and_a_retried_part_is_harmless(gateway):
    c = gateway.client()
    line = b'{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n'
    with pytest.raises(openai.BadRequestError) as e:
        c.uploads.create(bytes=len(line), filename="e.jsonl", mime_type="application/jsonl",
                         purpose="fine-tune", expires_after={"anchor": "created_at", "seconds": 60})
    assert e.value.param == "expires_after.seconds"
    up = c.uploads.create(bytes=len(line), filename="e.jsonl", mime_type="application/jsonl",
                          purpose="fine-tune", expires_after={"anchor": "created_at", "seconds": 7200})
    c.uploads.parts.create(up.id, data=line)  # as if its reply had been lost...
    part = c.uploads.parts.create(up.id, data=line)  # ...and the client sent it again
    done = c.uploads.complete(up.id, part_ids=[part.id])
    assert done.status == "completed"
    assert c.uploads.complete(up.id, part_ids=[part.id]).file.id == done.file.id  # a retried complete
    assert done.file.expires_at == done.file.created_at + 7200
    assert c.files.retrieve(done.file.id).expires_at == done.file.expires_at
    assert c.files.content(done.file.id).read() == line


def test_cancelled_upload_is_not_listed_and_takes_no_parts(gateway):
    c = gateway.client()
    before = [f.id for f in c.files.list()]
    up = c.uploads.create(bytes=10, filename="x.jsonl", mime_type="application/jsonl", purpose="fine-tune")
    c.uploads.parts.create(up.id, data=os.urandom(5))
    cancelled = c.uploads.cancel(up.id)
    assert cancelled.status == "cancelled"
    with pytest.raises((openai.BadRequestError, openai.ConflictError, openai.NotFoundError)):
        c.uploads.parts.create(up.id, data=b"12345")
    assert [f.id for f in c.files.list()] == before


def test_complete_with_wrong_total_bytes_is_rejected(gateway):
    c = gateway.client()
    up = c.uploads.create(bytes=100, filename="x.jsonl", mime_type="application/jsonl", purpose="fine-tune")
    p = c.uploads.parts.create(up.id, data=b'{"a": 1}\n')
    with pytest.raises(openai.BadRequestError):
        c.uploads.complete(up.id, part_ids=[p.id])
    assert c.files.list().data == []
