//! ggml storage types and dequantization to f32 of the ones the engine reads: F32, F16, BF16,
//! Q8_0, Q4_0 and Q4_1. Any other type is refused, naming it (the caller names the tensor).
//!
//! Block layouts (ggml's `ggml-common.h`), 32 elements per block, little-endian:
//! - Q8_0: 34 bytes: f16 scale `d`, 32 × i8 `q`; `x = d·q`.
//! - Q4_0: 18 bytes: f16 `d`, 16 bytes of nibbles; `x = d·(q − 8)`.
//! - Q4_1: 20 bytes: f16 `d`, f16 min `m`, 16 bytes of nibbles; `x = d·q + m`.
//!
//! In Q4_0/Q4_1 byte `j` holds element `j` in its low nibble and element `j + 16` in its high
//! nibble. Arithmetic is in f32 after widening the f16 scales, as llama.cpp and transformers do.

use half::{bf16, f16};

/// A ggml tensor type id, with its name and block geometry when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgmlType(pub u32);

/// `(id, name, elements per block, bytes per block)` for the types ggml defines.
const TYPES: [(u32, &str, usize, usize); 32] = [
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 36),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
];

/// The types [`dequantize`] reads.
pub const SUPPORTED: [&str; 6] = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1"];

impl GgmlType {
    /// The type with ggml id `id` (known or not).
    pub fn from_id(id: u32) -> Self {
        Self(id)
    }

    fn entry(self) -> Option<(u32, &'static str, usize, usize)> {
        TYPES.iter().copied().find(|t| t.0 == self.0)
    }

    /// ggml's name for the type (`Q4_1`), or `type <id>` for an id ggml does not define.
    pub fn name(self) -> String {
        self.entry()
            .map(|t| t.1.to_string())
            .unwrap_or_else(|| format!("type {}", self.0))
    }

    /// `(elements, bytes)` per block, when the type is known.
    pub fn block(self) -> Option<(usize, usize)> {
        self.entry().map(|t| (t.2, t.3))
    }

    /// Bytes taken by `elements` values whose rows are `row_len` long (0 when the type is
    /// unknown or the row length is not a whole number of blocks: such a tensor is refused
    /// when it is dequantized).
    pub fn byte_len(self, row_len: usize, elements: usize) -> usize {
        match self.block() {
            Some((n, b)) if row_len.is_multiple_of(n) => (elements / n).saturating_mul(b),
            _ => 0,
        }
    }
}

fn half_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// `bytes` (exactly the tensor's data) → `elements` f32 values. `row_len` is the length of the
/// fastest-moving dimension, which quantized blocks never straddle.
pub fn dequantize(
    ty: GgmlType,
    bytes: &[u8],
    row_len: usize,
    elements: usize,
) -> Result<Vec<f32>, String> {
    let name = ty.name();
    if !SUPPORTED.contains(&name.as_str()) {
        return Err(format!(
            "ggml type {name} is not supported (supported: {})",
            SUPPORTED.join(", ")
        ));
    }
    let (block, block_bytes) = ty.block().expect("supported types are known");
    if !row_len.is_multiple_of(block) {
        return Err(format!(
            "rows of {row_len} elements are not a whole number of {name} blocks of {block}"
        ));
    }
    if bytes.len() != elements / block * block_bytes {
        return Err(format!(
            "{} bytes of data for {elements} {name} elements",
            bytes.len()
        ));
    }
    let mut out = Vec::with_capacity(elements);
    match name.as_str() {
        "F32" => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        "F16" => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        "BF16" => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        "Q8_0" => {
            for blk in bytes.chunks_exact(block_bytes) {
                let d = half_at(blk, 0);
                out.extend(blk[2..34].iter().map(|&q| d * f32::from(q as i8)));
            }
        }
        "Q4_0" => {
            for blk in bytes.chunks_exact(block_bytes) {
                let d = half_at(blk, 0);
                let qs = &blk[2..18];
                out.extend(qs.iter().map(|&q| d * (f32::from(q & 0x0f) - 8.0)));
                out.extend(qs.iter().map(|&q| d * (f32::from(q >> 4) - 8.0)));
            }
        }
        "Q4_1" => {
            for blk in bytes.chunks_exact(block_bytes) {
                let (d, m) = (half_at(blk, 0), half_at(blk, 2));
                let qs = &blk[4..20];
                out.extend(qs.iter().map(|&q| d * f32::from(q & 0x0f) + m));
                out.extend(qs.iter().map(|&q| d * f32::from(q >> 4) + m));
            }
        }
        _ => unreachable!("every supported type is handled"),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: f32) -> [u8; 2] {
        f16::from_f32(v).to_le_bytes()
    }

    #[test]
    fn q4_1_low_nibbles_are_the_first_sixteen_elements() {
        let mut blk = Vec::new();
        blk.extend(h(0.5));
        blk.extend(h(-1.0));
        blk.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let x = dequantize(GgmlType(3), &blk, 32, 32).expect("Q4_1");
        for j in 0..16 {
            assert_eq!(x[j], 0.5 * j as f32 - 1.0);
            assert_eq!(x[j + 16], 0.5 * (15 - j) as f32 - 1.0);
        }
    }

    #[test]
    fn q4_0_is_centred_on_eight_and_q8_0_is_signed() {
        let mut blk = Vec::new();
        blk.extend(h(2.0));
        blk.extend([0x80u8; 16]);
        let x = dequantize(GgmlType(2), &blk, 32, 32).expect("Q4_0");
        assert!(x[..16].iter().all(|&v| v == -16.0));
        assert!(x[16..].iter().all(|&v| v == 0.0));
        let mut blk = Vec::new();
        blk.extend(h(0.25));
        blk.extend((0..32).map(|j: i8| (j - 16) as u8));
        let x = dequantize(GgmlType(8), &blk, 32, 32).expect("Q8_0");
        assert_eq!(x[0], -4.0);
        assert_eq!(x[31], 3.75);
    }

    #[test]
    fn floats_round_trip_and_other_types_are_refused_by_name() {
        let b: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(dequantize(GgmlType(0), &b, 2, 2).unwrap(), [1.5, -2.0]);
        let b: Vec<u8> = [bf16::from_f32(3.0).to_le_bytes(), h(0.5)].concat();
        assert!(
            dequantize(GgmlType(30), &b, 2, 1).is_err(),
            "4 bytes are not 1 BF16"
        );
        assert_eq!(dequantize(GgmlType(30), &b[..2], 1, 1).unwrap(), [3.0]);
        assert_eq!(dequantize(GgmlType(1), &b[2..], 1, 1).unwrap(), [0.5]);
        let err = dequantize(GgmlType(12), &[0; 144], 256, 256).unwrap_err();
        assert!(err.contains("Q4_K") && err.contains("Q4_1"), "{err}");
        assert!(dequantize(GgmlType(99), &[], 1, 0)
            .unwrap_err()
            .contains("type 99"));
    }
}
