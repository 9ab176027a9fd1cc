//! Streaming a mixed dataset: client examples and safety examples in plan order, generic over
//! the item type (a raw JSONL line `String`, a `Box<RawValue>`, a parsed example…), so the
//! gateway can mix raw lines without reparsing them.

use crate::mix::{MixError, MixPlan};

/// Iterator over the mixed dataset; yields an error (then stops) when the client data does not
/// have exactly the planned number of examples.
pub struct Interleave<I, T> {
    client: I,
    safety: std::vec::IntoIter<T>,
    positions: Vec<usize>,
    next_safety: usize,
    n_client: usize,
    client_seen: usize,
    out_pos: usize,
    done: bool,
}

/// Mixes `safety` (one item per plan entry, in plan order) into `client`.
pub fn interleave<I, T>(
    plan: &MixPlan,
    client: I,
    safety: Vec<T>,
) -> Result<Interleave<I::IntoIter, T>, MixError>
where
    I: IntoIterator<Item = T>,
{
    if safety.len() != plan.entries.len() {
        return Err(MixError::SafetyCount {
            expected: plan.entries.len(),
            actual: safety.len(),
        });
    }
    Ok(Interleave {
        client: client.into_iter(),
        safety: safety.into_iter(),
        positions: plan.entries.iter().map(|e| e.position).collect(),
        next_safety: 0,
        n_client: plan.n_client,
        client_seen: 0,
        out_pos: 0,
        done: false,
    })
}

/// [`interleave`] collected into a `Vec`.
pub fn mix_vec<T>(plan: &MixPlan, client: Vec<T>, safety: Vec<T>) -> Result<Vec<T>, MixError> {
    interleave(plan, client, safety)?.collect()
}

impl<I: Iterator<Item = T>, T> Iterator for Interleave<I, T> {
    type Item = Result<T, MixError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.positions.get(self.next_safety) == Some(&self.out_pos) {
            self.next_safety += 1;
            self.out_pos += 1;
            return self.safety.next().map(Ok);
        }
        let item = self.client.next();
        match item {
            Some(_) if self.client_seen == self.n_client => {
                self.done = true;
                Some(Err(MixError::ClientCount {
                    expected: self.n_client,
                    actual: "more".into(),
                }))
            }
            Some(item) => {
                self.client_seen += 1;
                self.out_pos += 1;
                Some(Ok(item))
            }
            None => {
                self.done = true;
                if self.client_seen != self.n_client || self.next_safety != self.positions.len() {
                    Some(Err(MixError::ClientCount {
                        expected: self.n_client,
                        actual: self.client_seen.to_string(),
                    }))
                } else {
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mix::Placement;
    use crate::select::Pick;

    fn picks(idx: &[usize]) -> Vec<Pick> {
        idx.iter()
            .map(|&i| Pick {
                pool_index: i,
                score: None,
            })
            .collect()
    }

    #[test]
    fn places_items_at_planned_positions() {
        let plan = MixPlan::new(&picks(&[7, 3]), 10, Placement::Even, 0);
        let client: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
        let out = mix_vec(&plan, client, vec!["s7".to_string(), "s3".to_string()]).unwrap();
        assert_eq!(out.join(" "), "c0 c1 s7 c2 c3 c4 c5 c6 s3 c7 c8 c9");
        for e in &plan.entries {
            assert_eq!(out[e.position], format!("s{}", e.pool_index));
        }
    }

    #[test]
    fn empty_client_data_yields_only_safety_items() {
        let plan = MixPlan::new(&picks(&[1, 2]), 0, Placement::Even, 0);
        assert_eq!(
            mix_vec(&plan, vec![], vec!["a", "b"]).unwrap(),
            vec!["a", "b"]
        );
    }

    #[test]
    fn count_mismatches_are_errors() {
        let plan = MixPlan::new(&picks(&[0]), 3, Placement::Even, 0);
        assert_eq!(
            mix_vec(&plan, vec![1, 2], vec![9]),
            Err(MixError::ClientCount {
                expected: 3,
                actual: "2".into()
            })
        );
        let err = mix_vec(&plan, vec![1, 2, 3, 4], vec![9]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the client dataset was planned with 3 examples but has more"
        );
        assert!(matches!(
            interleave(&plan, vec![1, 2, 3], vec![]),
            Err(MixError::SafetyCount {
                expected: 1,
                actual: 0
            })
        ));
        // Streaming stops after the error.
        let mut it = interleave(&plan, vec![1], vec![9]).unwrap();
        assert_eq!(it.next(), Some(Ok(1)));
        assert_eq!(it.next(), Some(Ok(9)));
        assert!(matches!(it.next(), Some(Err(_))));
        assert_eq!(it.next(), None);
    }
}
