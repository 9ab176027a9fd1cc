"""Tiny chat-JSONL training sets made on the fly, plus an SDK upload helper."""

from __future__ import annotations

import io
import json


def example(i: int) -> dict:
    return {"messages": [
        {"role": "user", "content": f"What is {i} plus {i}?"},
        {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."},
    ]}


def good_jsonl(n: int = 12) -> bytes:
    return "".join(json.dumps(example(i)) + "\n" for i in range(n)).encode()


def bad_jsonl(bad_line: int = 4, n: int = 12) -> bytes:
    """`n` examples where line `bad_line` (1-based) has no assistant message."""
    lines = [json.dumps(example(i)) for i in range(n)]
    lines[bad_line - 1] = json.dumps({"messages": [{"role": "user", "content": "only a question"}]})
    return ("\n".join(lines) + "\n").encode()


def upload(client, content: bytes, name: str = "train.jsonl", purpose: str = "fine-tune"):
    return client.files.create(file=(name, io.BytesIO(content)), purpose=purpose)
