"""Builds the PyTorch (`.pt`) steering-vector fixtures the trainer's `load_vectors` reads.

persona_vectors (github.com/safety-research/persona_vectors, generate_vec.py) saves its vectors
with `torch.save(tensor, path)`: a bare float32 tensor [num_layers + 1, hidden] (a torch.stack of
per-layer `.float()` means, on the CPU), in torch's zip format. The Rust side reads these through
burn-store's PyTorch reader; CI has no torch, so the files are committed together with what torch
says they hold.

From trainer/tests/fixtures/train/steer.safetensors (one f32 tensor `vectors` [3, 32], made by
make_train_fixtures.py for the tiny_tied model: 2 layers, hidden 32) it writes:

- fixtures/train/steer.pt: the same tensor saved bare, as persona_vectors does; training with it
  must give exactly the adapter the steer.safetensors twin gives.
- fixtures/pt_vectors/:
  - bare_bf16.pt, bare_f16.pt, bare_f64.pt: the same values cast to bf16 / f16 / f64, saved bare;
  - dict.pt: `{"vectors": f32 tensor}` (a state-dict-style file with one tensor);
  - legacy_dict.pt: the same dict in torch's pre-1.6 (non-zip) format, which the reader refuses
    (nothing in that format lets it check a storage's size or bytes);
  - wrong_shape.pt: a bare f32 [2, 32] tensor (one row short);
  - two_tensors.pt: `{"a": [3, 32], "b": [3, 32]}`;
  - view.pt: a bare `big[1:]` view of a [4, 32] tensor (torch saves the whole [4, 32] storage
    and an offset; the reader does not see strides or offsets, so it must refuse it);
  - int.pt: a bare int64 [3, 32] tensor;
  - nonfinite.pt: the f32 tensor with one NaN;
  - expected.safetensors: what torch holds for each accepted file after `.float()`: tensors
    `bare_bf16`, `bare_f16`, `bare_f64`, `dict` (all f32 [3, 32]).

Run with the reference venv: `python trainer/reference/make_pt_vectors.py`. torch.save writes a
fresh serialization id each time, so a rerun changes the files' bytes but not their tensors.
"""

import os

import torch
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures")


def main():
    v = load_file(os.path.join(FIXTURES, "train", "steer.safetensors"))["vectors"]
    assert v.dtype == torch.float32 and tuple(v.shape) == (3, 32), (v.dtype, v.shape)
    torch.save(v.clone(), os.path.join(FIXTURES, "train", "steer.pt"))

    out = os.path.join(FIXTURES, "pt_vectors")
    os.makedirs(out, exist_ok=True)
    p = lambda name: os.path.join(out, name)  # noqa: E731

    expected = {}
    for name, dtype in [("bare_bf16", torch.bfloat16), ("bare_f16", torch.float16),
                        ("bare_f64", torch.float64)]:
        t = v.to(dtype).contiguous()
        torch.save(t, p(name + ".pt"))
        expected[name] = t.float().contiguous()
    # The casts must have changed something, or the conversion test would prove nothing.
    assert not torch.equal(expected["bare_bf16"], v)
    assert not torch.equal(expected["bare_f16"], v)

    torch.save({"vectors": v.clone()}, p("dict.pt"))
    expected["dict"] = v.clone()
    torch.save({"vectors": v.clone()}, p("legacy_dict.pt"), _use_new_zipfile_serialization=False)

    torch.save(v[:2].clone(), p("wrong_shape.pt"))
    torch.save({"a": v.clone(), "b": (2 * v).contiguous()}, p("two_tensors.pt"))
    big = torch.cat([torch.full((1, 32), 7.0), v], dim=0)
    view = big[1:]
    assert view.storage_offset() == 32 and torch.equal(view, v)
    torch.save(view, p("view.pt"))
    torch.save(torch.arange(96, dtype=torch.int64).reshape(3, 32), p("int.pt"))
    bad = v.clone()
    bad[1, 5] = float("nan")
    torch.save(bad, p("nonfinite.pt"))

    save_file(expected, p("expected.safetensors"))

    # What was written reads back as written.
    assert torch.equal(torch.load(os.path.join(FIXTURES, "train", "steer.pt")), v)
    for name in ["bare_bf16", "bare_f16", "bare_f64"]:
        assert torch.equal(torch.load(p(name + ".pt")).float(), expected[name])
    assert torch.equal(torch.load(p("legacy_dict.pt"))["vectors"], v)
    for f in sorted(os.listdir(out)):
        print(f"{f}: {os.path.getsize(p(f))} bytes")


if __name__ == "__main__":
    main()
