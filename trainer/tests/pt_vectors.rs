//! Steering vectors from PyTorch `.pt` files (persona_vectors saves a bare tensor with
//! `torch.save`), read through burn-store: the values torch wrote (fixtures and expected values
//! from `trainer/reference/make_pt_vectors.py`), bf16 / f16 / f64 converted, dicts with one
//! tensor, the safetensors checks kept (one tensor, shape naming the tensor, finite), and
//! damaged or foreign files refused with an error naming the file, never a panic or wrong data.

mod common;

use std::path::{Path, PathBuf};

use common::fixtures;
use trainer::config::Qwen2Config;
use trainer::train::steering::{load_vectors, TOP_LEVEL_TENSOR};
use trainer::weights::read_safetensors;

fn pt(name: &str) -> PathBuf {
    fixtures().join("pt_vectors").join(name)
}

fn steer_pt() -> PathBuf {
    fixtures().join("train/steer.pt")
}

/// The tiny_tied model the vectors are for: 2 layers, hidden 32, so vectors are [3, 32].
fn tiny() -> Qwen2Config {
    Qwen2Config::load(&fixtures().join("tiny_tied/config.json")).expect("fixture config")
}

/// The f32 values make_train_fixtures.py wrote to steer.safetensors; every .pt fixture is
/// made from them.
fn steer_values() -> Vec<f32> {
    let t = read_safetensors(&fixtures().join("train/steer.safetensors")).unwrap();
    assert_eq!(t["vectors"].shape, vec![3, 32]);
    t["vectors"].data.clone()
}

fn expected(name: &str) -> Vec<f32> {
    let t = read_safetensors(&pt("expected.safetensors")).unwrap();
    assert_eq!(t[name].shape, vec![3, 32], "{name}");
    t[name].data.clone()
}

fn err(path: &Path) -> String {
    let e = load_vectors(path, &tiny())
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains(&path.display().to_string()),
        "names the file: {e}"
    );
    e
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn a_bare_f32_tensor_reads_as_torch_wrote_it_bit_for_bit() {
    let want = steer_values();
    let got = load_vectors(&steer_pt(), &tiny()).expect("loads");
    assert_eq!(bits(&got), bits(&want));
    // The safetensors twin gives the same.
    let st = load_vectors(&fixtures().join("train/steer.safetensors"), &tiny()).unwrap();
    assert_eq!(bits(&st), bits(&want));
}

#[test]
fn bf16_f16_and_f64_tensors_are_converted_to_f32_as_torch_does() {
    let f32s = steer_values();
    for name in ["bare_bf16", "bare_f16", "bare_f64"] {
        let got = load_vectors(&pt(&format!("{name}.pt")), &tiny())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = expected(name);
        assert_eq!(bits(&got), bits(&want), "{name}: torch's .float() values");
        if name != "bare_f64" {
            // The cast changed values, so equality above is the conversion's, not a no-op's.
            assert_ne!(bits(&got), bits(&f32s), "{name}");
        }
    }
}

#[test]
fn a_dict_holding_one_tensor_is_read() {
    let want = expected("dict");
    assert_eq!(bits(&want), bits(&steer_values()));
    let got = load_vectors(&pt("dict.pt"), &tiny()).expect("loads");
    assert_eq!(bits(&got), bits(&want));
}

/// torch's pre-1.6 format has no checksum and no storage sizes burn-store checks (it pads a
/// cut storage with zeros): refused, saying how to save it instead.
#[test]
fn the_legacy_format_is_refused() {
    let e = err(&pt("legacy_dict.pt"));
    assert!(e.contains("legacy (pre-1.6) format is not read"), "{e}");
    assert!(e.contains("save it again with torch.save"), "{e}");
}

#[test]
fn the_format_is_told_by_content_before_the_extension() {
    let dir = tempfile::tempdir().unwrap();
    let want = bits(&steer_values());
    // A torch file named .safetensors, and a safetensors file named .pt, both load.
    let a = dir.path().join("vectors.safetensors");
    std::fs::copy(steer_pt(), &a).unwrap();
    assert_eq!(bits(&load_vectors(&a, &tiny()).unwrap()), want);
    let b = dir.path().join("vectors.pt");
    std::fs::copy(fixtures().join("train/steer.safetensors"), &b).unwrap();
    assert_eq!(bits(&load_vectors(&b, &tiny()).unwrap()), want);
}

#[test]
fn a_wrong_shape_is_refused_naming_the_tensor_and_both_shapes() {
    let e = err(&pt("wrong_shape.pt"));
    assert!(e.contains(&format!("tensor `{TOP_LEVEL_TENSOR}`")), "{e}");
    assert!(
        e.contains("shape [2, 32]") && e.contains("expected [3, 32]"),
        "{e}"
    );
}

#[test]
fn two_tensors_a_view_an_int_tensor_and_a_nan_are_refused() {
    let e = err(&pt("two_tensors.pt"));
    assert!(
        e.contains("exactly one") && e.contains(r#"["a", "b"]"#),
        "{e}"
    );

    // big[1:] of a [4, 32] tensor: torch saves the whole storage with an offset the reader
    // does not see; reading it would give rows 0..3 of `big`, so it is refused.
    let e = err(&pt("view.pt"));
    assert!(e.contains(TOP_LEVEL_TENSOR), "{e}");
    assert!(e.contains("384 bytes") && e.contains("[512]"), "{e}");
    assert!(e.contains("contiguous()"), "{e}");

    let e = err(&pt("int.pt"));
    assert!(e.contains("unsupported dtype I64"), "{e}");

    let e = err(&pt("nonfinite.pt"));
    assert!(
        e.contains(TOP_LEVEL_TENSOR) && e.contains("non-finite"),
        "{e}"
    );
}

#[test]
fn every_truncation_of_a_pt_file_is_an_error() {
    for file in [steer_pt(), pt("bare_bf16.pt")] {
        truncations_are_errors(&file);
    }
}

fn truncations_are_errors(file: &Path) {
    let bytes = std::fs::read(file).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.pt");
    for len in 0..bytes.len() {
        std::fs::write(&path, &bytes[..len]).unwrap();
        match load_vectors(&path, &tiny()) {
            Ok(_) => panic!(
                "{} cut to {len} of {} bytes loaded",
                file.display(),
                bytes.len()
            ),
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains(&path.display().to_string()), "{len}: {e}");
            }
        }
    }
}

/// Every single-byte corruption either is refused or (in bytes nothing reads: timestamps,
/// padding) loads the very same values; never other values, never a panic.
#[test]
fn no_single_byte_corruption_loads_other_values() {
    let bytes = std::fs::read(steer_pt()).unwrap();
    let want = bits(&steer_values());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flipped.pt");
    let mut refused = 0;
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0xa5;
        std::fs::write(&path, &b).unwrap();
        match load_vectors(&path, &tiny()) {
            Ok(v) => assert_eq!(bits(&v), want, "byte {i} changed the values"),
            Err(_) => refused += 1,
        }
    }
    // The storage (384 bytes, checksummed) alone is most of the file's meaningful bytes.
    assert!(refused > 384, "only {refused} corruptions refused");
}

#[test]
fn garbage_and_foreign_pickles_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();

    let garbage = dir.path().join("garbage.pt");
    std::fs::write(&garbage, b"this is not a torch file at all").unwrap();
    let e = err(&garbage);
    assert!(e.contains("not a readable PyTorch file"), "{e}");
    assert!(e.contains("not a zip archive"), "{e}");

    // A zip archive whose data.pkl is not a pickle, and one whose pickle holds no tensor.
    for (name, pickle, says) in [
        (
            "bad_pickle.pt",
            &b"\x80\x02\xff\xfe garbage"[..],
            "data.pkl",
        ),
        (
            "int_pickle.pt",
            &b"\x80\x02K\x05."[..],
            "neither a tensor nor a dict",
        ),
        ("empty_dict.pt", &b"\x80\x02}q\x00."[..], "found 0"),
    ] {
        let path = dir.path().join(name);
        let mut w = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        w.start_file("archive/data.pkl", opts).unwrap();
        std::io::Write::write_all(&mut w, pickle).unwrap();
        w.finish().unwrap();
        let e = err(&path);
        assert!(e.contains(says), "{name}: {e}");
    }

    // A file saved on a big-endian machine (torch's own, its byteorder entry rewritten).
    let path = dir.path().join("big_endian.pt");
    let mut src = zip::ZipArchive::new(std::fs::File::open(steer_pt()).unwrap()).unwrap();
    let mut w = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    for i in 0..src.len() {
        let mut entry = src.by_index(i).unwrap();
        let name = entry.name().to_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        if name.ends_with("/byteorder") {
            assert_eq!(bytes, b"little");
            bytes = b"big".to_vec();
        }
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        w.start_file(name, opts).unwrap();
        std::io::Write::write_all(&mut w, &bytes).unwrap();
    }
    w.finish().unwrap();
    let e = err(&path);
    assert!(e.contains("big-endian"), "{e}");

    // A zip archive without a pickle.
    let path = dir.path().join("no_pickle.pt");
    let mut w = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    w.start_file("x.txt", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(&mut w, b"hello").unwrap();
    w.finish().unwrap();
    let e = err(&path);
    assert!(e.contains("no `data.pkl`"), "{e}");
}
