//! Padded token batches with validity masks and position ids.

/// A padded batch of token sequences.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBatch {
    /// `[rows][len]` token ids (padding filled with `pad_id`).
    pub ids: Vec<Vec<u32>>,
    /// `[rows][len]`: true for real tokens.
    pub valid: Vec<Vec<bool>>,
    /// `[rows][len]` RoPE positions (count of real tokens before, as HF's cumsum − 1).
    pub positions: Vec<Vec<usize>>,
}

impl TokenBatch {
    /// Pads on the right (scoring, training).
    pub fn right_padded(seqs: &[Vec<u32>], pad_id: u32) -> Self {
        Self::padded(seqs, pad_id, false)
    }

    /// Pads on the left (generation prefill, so every row ends at the same column).
    pub fn left_padded(seqs: &[Vec<u32>], pad_id: u32) -> Self {
        Self::padded(seqs, pad_id, true)
    }

    fn padded(seqs: &[Vec<u32>], pad_id: u32, left: bool) -> Self {
        let len = seqs.iter().map(Vec::len).max().unwrap_or(0);
        let mut out = Self {
            ids: Vec::new(),
            valid: Vec::new(),
            positions: Vec::new(),
        };
        for s in seqs {
            let pad = len - s.len();
            let (ids, valid): (Vec<u32>, Vec<bool>) = if left {
                std::iter::repeat_n((pad_id, false), pad)
                    .chain(s.iter().map(|&i| (i, true)))
                    .unzip()
            } else {
                s.iter()
                    .map(|&i| (i, true))
                    .chain(std::iter::repeat_n((pad_id, false), pad))
                    .unzip()
            };
            out.positions.push(positions_from(&valid, 0));
            out.ids.push(ids);
            out.valid.push(valid);
        }
        out
    }

    /// A one-column continuation batch: each row's next token at its next position.
    pub fn step(tokens: &[u32], next_positions: &[usize]) -> Self {
        Self {
            ids: tokens.iter().map(|&t| vec![t]).collect(),
            valid: tokens.iter().map(|_| vec![true]).collect(),
            positions: next_positions.iter().map(|&p| vec![p]).collect(),
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.ids.len()
    }

    /// Padded length.
    pub fn len(&self) -> usize {
        self.ids.first().map_or(0, Vec::len)
    }

    /// True when there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Position of a real token = number of real tokens before it; padding gets 1 (as HF's
/// `position_ids.masked_fill_(attention_mask == 0, 1)`; masked out anyway).
fn positions_from(valid: &[bool], start: usize) -> Vec<usize> {
    let mut n = start;
    valid
        .iter()
        .map(|&v| {
            if v {
                n += 1;
                n - 1
            } else {
                1
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn left_padding_positions_count_real_tokens() {
        let b = TokenBatch::left_padded(&[vec![5, 6, 7], vec![8]], 0);
        assert_eq!(b.ids, vec![vec![5, 6, 7], vec![0, 0, 8]]);
        assert_eq!(b.valid[1], vec![false, false, true]);
        assert_eq!(b.positions[0], vec![0, 1, 2]);
        assert_eq!(b.positions[1][2], 0);
    }

    #[test]
    fn right_padding_keeps_prefix() {
        let b = TokenBatch::right_padded(&[vec![1], vec![2, 3]], 9);
        assert_eq!(b.ids, vec![vec![1, 9], vec![2, 3]]);
        assert_eq!(b.positions[1], vec![0, 1]);
    }
}
