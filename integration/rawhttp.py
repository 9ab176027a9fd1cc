"""Raw half-sent HTTP requests, for tests that need a request in flight when the gateway stops."""

import socket
from urllib.parse import urlsplit

from conftest import KEYS


def start_partial_post(gw, path: str, total_body: int, head: bytes) -> socket.socket:
    """Opens a POST that announces `total_body` bytes of multipart but sends only `head`."""
    u = urlsplit(gw.url)
    s = socket.create_connection((u.hostname, u.port), timeout=10)
    req = (f"POST /v1{path} HTTP/1.1\r\nHost: {u.netloc}\r\nAuthorization: Bearer {KEYS['acme']}\r\n"
           f"Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: {total_body}\r\n\r\n")
    s.sendall(req.encode() + head)
    return s


def multipart_head(field: str, filename: str, extra_fields: dict) -> bytes:
    out = b""
    for k, v in extra_fields.items():
        out += f'--XyZ\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
    out += (f'--XyZ\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    return out
