"""Files API through the openai SDK: upload, list (pagination), retrieve, content, delete, errors."""

import httpx2 as httpx
import openai
import pytest

from datasets import good_jsonl, upload


def test_upload_retrieve_content_delete(gateway):
    c = gateway.client()
    data = good_jsonl(12)
    f = upload(c, data, name="train.jsonl")
    assert f.id.startswith("file-") and f.object == "file"
    assert f.bytes == len(data) and f.filename == "train.jsonl" and f.purpose == "fine-tune"
    got = c.files.retrieve(f.id)
    assert (got.id, got.bytes, got.filename) == (f.id, f.bytes, f.filename)
    assert c.files.content(f.id).read() == data
    deleted = c.files.delete(f.id)
    assert deleted.id == f.id and deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        c.files.retrieve(f.id)
    assert f.id not in [x.id for x in c.files.list()]


def test_list_pagination_after_limit_and_order(gateway):
    c = gateway.client()
    ids = [upload(c, good_jsonl(10 + i), name=f"t{i}.jsonl").id for i in range(5)]
    page = c.files.list(limit=2)
    assert len(page.data) == 2 and page.has_more is True
    # The SDK follows `after=<last id>` through every page.
    walked = [f.id for f in c.files.list(limit=2)]
    assert sorted(walked) == sorted(ids) and len(walked) == 5
    asc = [f.id for f in c.files.list(order="asc", limit=100).data]
    desc = [f.id for f in c.files.list(order="desc", limit=100).data]
    assert asc == ids and desc == list(reversed(ids))
    second = c.files.list(order="asc", after=ids[1], limit=2)
    assert [f.id for f in second.data] == ids[2:4] and second.has_more is True


def test_list_filters_by_purpose(gateway):
    c = gateway.client()
    ft = upload(c, good_jsonl(), purpose="fine-tune")
    other = upload(c, b"some batch input\n", name="notes.txt", purpose="user_data")
    listed = [f.id for f in c.files.list(purpose="fine-tune")]
    assert ft.id in listed and other.id not in listed


def test_unknown_file_is_not_found_in_openai_shape(gateway):
    c = gateway.client()
    with pytest.raises(openai.NotFoundError) as e:
        c.files.retrieve("file-doesnotexist00000000000")
    err = e.value.body
    assert err["type"] == "invalid_request_error"
    assert "file-doesnotexist00000000000" in err["message"]
    assert e.value.request_id  # x-request-id on every response


def test_non_jsonl_fine_tune_upload_is_rejected(gateway):
    c = gateway.client()
    with pytest.raises(openai.BadRequestError) as e:
        upload(c, b"this is not json\nnor this\n", name="train.jsonl")
    assert e.value.response.headers.get("x-should-retry") == "false"
    assert "line 1" in e.value.message.lower() or "jsonl" in e.value.message.lower()
    assert [f.id for f in c.files.list()] == []


def test_wrong_or_missing_key_is_authentication_error(gateway):
    with pytest.raises(openai.AuthenticationError) as e:
        gateway.client("sk-not-a-real-key").files.list()
    assert e.value.code == "invalid_api_key"
    r = httpx.get(gateway.base_url + "/files")
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert r.headers.get("x-should-retry") == "false"
    assert r.headers.get("x-request-id")


def test_admin_routes_need_admin_key(gateway):
    r = httpx.get(gateway.base_url + "/tuneguard/admin/policies",
                  headers={"Authorization": "Bearer " + "sk-acme-0123456789"})
    assert r.status_code in (401, 403), r.text
    ok = httpx.get(gateway.base_url + "/tuneguard/admin/policies",
                   headers={"Authorization": "Bearer sk-admin-operator"})
    assert ok.status_code == 200, ok.text


def test_unknown_route_is_openai_404(gateway):
    r = httpx.get(gateway.base_url + "/no/such/route",
                  headers={"Authorization": "Bearer sk-acme-0123456789"})
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"


def test_health_endpoints(gateway):
    assert httpx.get(gateway.url + "/healthz").status_code == 200
    assert httpx.get(gateway.url + "/readyz").status_code == 200
