//! On-policy Interleaving (seed 004 §3.2): pool prompts, in a seeded random order, answered by
//! the aligned base model; replies that fail the [`QualityFilter`] are skipped and the next
//! prompt is tried, until `n` replies pass or the pool runs out.

use crate::pool::{ChatMessage, PoolExample};
use crate::quality::QualityFilter;
use crate::rng::permutation;
use crate::select::Pick;
use std::collections::BTreeMap;
use thiserror::Error;

/// One generated reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
    /// Whether the model ended its turn (a stop token) rather than hitting the length limit.
    pub finished: bool,
}

/// The generation seam: one reply per prompt, in order (greedy or seeded sampling is the
/// engine's business; it must be deterministic for a given seed to keep mixing reproducible).
pub trait ReplyGenerator {
    fn generate_batch(
        &mut self,
        prompts: &[&[ChatMessage]],
    ) -> Result<Vec<Reply>, Box<dyn std::error::Error + Send + Sync>>;
}

/// The regenerated examples, in pick order, and why others were dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct OnPolicyOutcome {
    pub picks: Vec<Pick>,
    /// `picks[i]`'s prompt with the generated reply.
    pub examples: Vec<PoolExample>,
    /// Rejections by [`crate::QualityReject::kind`].
    pub rejected: BTreeMap<&'static str, usize>,
    /// Prompts sent to the engine.
    pub generated: usize,
}

#[derive(Debug, Error)]
pub enum OnPolicyError {
    #[error("on-policy needs {needed} replies that pass the quality filter but only {passed} of {pool} pool prompts did (rejected: {rejected:?})")]
    TooFewPassed {
        needed: usize,
        passed: usize,
        pool: usize,
        rejected: BTreeMap<&'static str, usize>,
    },
    #[error("generation failed on a batch of {batch} prompts: {source}")]
    Engine {
        batch: usize,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("generator returned {got} replies for {expected} prompts")]
    EngineCount { expected: usize, got: usize },
    #[error("batch size must be at least 1")]
    BatchSize,
}

/// Generates until `n` replies pass `quality`; batches hold at most `batch_size` prompts and
/// never more than are still needed.
pub fn on_policy(
    pool: &[PoolExample],
    n: usize,
    seed: u64,
    quality: &QualityFilter,
    generator: &mut dyn ReplyGenerator,
    batch_size: usize,
) -> Result<OnPolicyOutcome, OnPolicyError> {
    if batch_size == 0 {
        return Err(OnPolicyError::BatchSize);
    }
    let order = permutation(pool.len(), seed);
    let mut out = OnPolicyOutcome {
        picks: Vec::with_capacity(n),
        examples: Vec::with_capacity(n),
        rejected: BTreeMap::new(),
        generated: 0,
    };
    let mut next = 0;
    while out.picks.len() < n && next < order.len() {
        let take = batch_size.min(n - out.picks.len()).min(order.len() - next);
        let idx = &order[next..next + take];
        next += take;
        let prompts: Vec<&[ChatMessage]> = idx.iter().map(|&i| pool[i].prompt()).collect();
        let replies =
            generator
                .generate_batch(&prompts)
                .map_err(|source| OnPolicyError::Engine {
                    batch: take,
                    source,
                })?;
        if replies.len() != take {
            return Err(OnPolicyError::EngineCount {
                expected: take,
                got: replies.len(),
            });
        }
        out.generated += take;
        for (&i, reply) in idx.iter().zip(replies) {
            match quality.check_reply(&reply) {
                Ok(()) => {
                    out.picks.push(Pick {
                        pool_index: i,
                        score: None,
                    });
                    out.examples.push(pool[i].with_reply(reply.text));
                }
                Err(r) => *out.rejected.entry(r.kind()).or_default() += 1,
            }
        }
    }
    if out.picks.len() < n {
        return Err(OnPolicyError::TooFewPassed {
            needed: n,
            passed: out.picks.len(),
            pool: pool.len(),
            rejected: out.rejected,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Vec<PoolExample> {
        (0..n)
            .map(|i| {
                PoolExample::new(vec![
                    ChatMessage {
                        role: "user".into(),
                        content: format!("q{i}"),
                    },
                    ChatMessage {
                        role: "assistant".into(),
                        content: "old".into(),
                    },
                ])
                .unwrap()
            })
            .collect()
    }

    /// Replies well to even prompts, too short to odd ones.
    struct Parity(Vec<usize>);
    impl ReplyGenerator for Parity {
        fn generate_batch(
            &mut self,
            prompts: &[&[ChatMessage]],
        ) -> Result<Vec<Reply>, Box<dyn std::error::Error + Send + Sync>> {
            self.0.push(prompts.len());
            Ok(prompts
                .iter()
                .map(|p| {
                    let q = &p[0].content;
                    let i: usize = q[1..].parse().unwrap_or(0);
                    let text = if i.is_multiple_of(2) {
                        format!("Here is a full answer to {q}.")
                    } else {
                        "ok".to_string()
                    };
                    Reply {
                        text,
                        finished: true,
                    }
                })
                .collect())
        }
    }

    /// Answers every prompt fully, but the model hits the length limit on multiples of 3.
    struct CutOff;
    impl ReplyGenerator for CutOff {
        fn generate_batch(
            &mut self,
            prompts: &[&[ChatMessage]],
        ) -> Result<Vec<Reply>, Box<dyn std::error::Error + Send + Sync>> {
            Ok(prompts
                .iter()
                .map(|p| {
                    let q = &p[0].content;
                    let i: usize = q[1..].parse().unwrap_or(0);
                    Reply {
                        text: format!("Here is a long answer to {q} that goes on and"),
                        finished: !i.is_multiple_of(3),
                    }
                })
                .collect())
        }
    }

    #[test]
    fn unfinished_replies_are_skipped_unless_allowed() {
        let p = pool(12);
        let out = on_policy(&p, 6, 1, &QualityFilter::default(), &mut CutOff, 4).unwrap();
        assert!(out.picks.iter().all(|k| !k.pool_index.is_multiple_of(3)));
        assert_eq!(
            out.rejected.get("unfinished").copied(),
            Some(out.generated - 6)
        );
        let lenient = QualityFilter {
            reject_unfinished: false,
            ..QualityFilter::default()
        };
        let all = on_policy(&p, 6, 1, &lenient, &mut CutOff, 4).unwrap();
        assert_eq!(all.generated, 6);
        assert!(all.rejected.is_empty());
    }

    #[test]
    fn regenerates_until_enough_pass() {
        let p = pool(20);
        let mut g = Parity(vec![]);
        let out = on_policy(&p, 3, 5, &QualityFilter::default(), &mut g, 2).unwrap();
        assert_eq!(out.picks.len(), 3);
        let order = permutation(20, 5);
        let expected: Vec<usize> = order
            .iter()
            .copied()
            .filter(|i| i.is_multiple_of(2))
            .take(3)
            .collect();
        assert_eq!(
            out.picks.iter().map(|p| p.pool_index).collect::<Vec<_>>(),
            expected
        );
        for (pick, ex) in out.picks.iter().zip(&out.examples) {
            assert_eq!(ex.prompt()[0].content, format!("q{}", pick.pool_index));
            assert!(ex.reply().starts_with("Here is a full answer"));
        }
        assert_eq!(out.generated, g.0.iter().sum::<usize>());
        assert_eq!(
            out.rejected.get("too_short").copied().unwrap_or(0),
            out.generated - 3
        );
        assert!(g.0.iter().all(|&b| b <= 2));
        // Same seed, same outcome.
        let again = on_policy(&p, 3, 5, &QualityFilter::default(), &mut Parity(vec![]), 2).unwrap();
        assert_eq!(again, out);
    }

    #[test]
    fn too_few_passing_replies_is_an_error() {
        let err = on_policy(
            &pool(5),
            4,
            0,
            &QualityFilter::default(),
            &mut Parity(vec![]),
            8,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "on-policy needs 4 replies that pass the quality filter but only 3 of 5 pool prompts did (rejected: {\"too_short\": 2})"
        );
        assert!(matches!(
            on_policy(
                &pool(5),
                1,
                0,
                &QualityFilter::default(),
                &mut Parity(vec![]),
                0
            ),
            Err(OnPolicyError::BatchSize)
        ));
    }
}
