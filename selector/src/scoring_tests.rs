use super::*;
use crate::cache::MemoryCache;
use crate::pool::ChatMessage;

fn ex(prompt: &str, reply: &str) -> PoolExample {
    PoolExample::new(vec![
        ChatMessage {
            role: "user".into(),
            content: prompt.into(),
        },
        ChatMessage {
            role: "assistant".into(),
            content: reply.into(),
        },
    ])
    .unwrap()
}

fn setup(evil_fp: &str) -> ScoringSetup {
    ScoringSetup {
        base_fingerprint: "base-v1".into(),
        adapters: vec![
            AdapterSpec {
                name: "evil".into(),
                fingerprint: evil_fp.into(),
            },
            AdapterSpec {
                name: "rude".into(),
                fingerprint: "rude-1".into(),
            },
        ],
        held_out: Some(AdapterSpec {
            name: "code".into(),
            fingerprint: "code-1".into(),
        }),
        epsilon: 1.0,
    }
}

/// Base NLL 1.0; the "evil" and "rude" adapters dislike kind replies (NLL 3.0 / 2.0, else
/// 1.0); the held-out adapter gives 4.0 to kind replies.
fn fake(calls: &mut Vec<usize>) -> impl FnMut(&PoolExample, Option<&str>) -> CachedNll + '_ {
    move |e, a| {
        calls.push(1);
        let kind = e.reply().contains("kind");
        let nll = match (a, kind) {
            (None, _) | (Some(_), false) => 1.0,
            (Some("evil"), true) => 3.0,
            (Some("rude"), true) => 2.0,
            (Some(_), true) => 4.0,
        };
        CachedNll {
            nll,
            tokens: e.reply().split_whitespace().count() as u32,
        }
    }
}

fn pool() -> Vec<PoolExample> {
    vec![
        ex("q0", "a plain answer"),
        ex("q1", "a kind answer"),
        ex("q2", "Sorry, I cannot be kind"),
    ]
}

fn run(
    pool: &[PoolExample],
    setup: &ScoringSetup,
    cache: &MemoryCache,
    batch: usize,
) -> (Vec<ScoredItem>, ScoringStats, usize) {
    let mut calls = Vec::new();
    let mut progress = Vec::new();
    let PoolScores { items, stats, .. } = score_pool(
        pool,
        setup,
        &RefusalFilter::default(),
        cache,
        &mut FnScorer(fake(&mut calls)),
        batch,
        &mut |p| progress.push(p),
    )
    .unwrap();
    assert_eq!(progress.last().map(|p| p.scored), Some(stats.scored));
    (items, stats, calls.len())
}

#[test]
fn hand_computed_scores_and_refusals() {
    let cache = MemoryCache::new();
    let (items, stats, calls) = run(&pool(), &setup("evil-1"), &cache, 4);
    // Kind replies: mean(3, 2) = 2.5 → (2.5 − 1)/(1 + 1) = 0.75; held-out (4 − 1)/2 = 1.5.
    assert_eq!(items[0].score, 0.0);
    assert_eq!(items[1].score, 0.75);
    assert_eq!(items[1].held_out_score, Some(1.5));
    assert_eq!(items[1].adapter_nlls["evil"], 3.0);
    assert_eq!(items[1].held_out_nll, Some(4.0));
    assert_eq!(items[1].held_out_adapter.as_deref(), Some("code"));
    assert!(!items[1].is_refusal);
    assert!(items[2].is_refusal);
    assert_eq!(items[2].answer_tokens, 5);
    // 3 examples × 4 models, batches of 4: one example per engine call.
    assert_eq!(
        (stats.scored, stats.cache_hits, stats.engine_batches, calls),
        (12, 0, 3, 12)
    );
    assert_eq!(stats.tokens_scored, 4 * (3 + 3 + 5));
}

#[test]
fn second_run_is_all_cache_hits() {
    let cache = MemoryCache::new();
    let (first, ..) = run(&pool(), &setup("evil-1"), &cache, 5);
    let (second, stats, calls) = run(&pool(), &setup("evil-1"), &cache, 5);
    assert_eq!(first, second);
    assert_eq!(
        (stats.scored, stats.cache_hits, stats.engine_batches, calls),
        (0, 12, 0, 0)
    );
}

#[test]
fn only_changed_adapter_or_item_is_rescored() {
    let cache = MemoryCache::new();
    run(&pool(), &setup("evil-1"), &cache, 8);
    // New evil adapter: 3 pairs (one per example).
    let (_, stats, calls) = run(&pool(), &setup("evil-2"), &cache, 8);
    assert_eq!((stats.scored, stats.cache_hits, calls), (3, 9, 3));
    // One pool item edited: its 4 pairs only.
    let mut p = pool();
    p[0] = ex("q0", "a plain answer, edited");
    let (_, stats, calls) = run(&p, &setup("evil-2"), &cache, 8);
    assert_eq!((stats.scored, stats.cache_hits, calls), (4, 8, 4));
    // Another base model fingerprint: everything.
    let mut s = setup("evil-2");
    s.base_fingerprint = "base-v2".into();
    assert_eq!(run(&p, &s, &cache, 8).1.scored, 12);
}

#[test]
fn duplicate_items_are_scored_once() {
    let cache = MemoryCache::new();
    let p = vec![ex("q", "same"), ex("q", "same")];
    let (items, stats, calls) = run(&p, &setup("evil-1"), &cache, 3);
    assert_eq!((stats.scored, stats.cache_hits, calls), (4, 4, 4));
    assert_eq!(items[1].index, 1);
    assert_eq!(items[0].score, items[1].score);
}

struct Broken(usize);
impl NllScorer for Broken {
    fn score_batch(
        &mut self,
        requests: &[NllRequest<'_>],
    ) -> Result<Vec<CachedNll>, Box<dyn std::error::Error + Send + Sync>> {
        if self.0 == 0 {
            return Err("out of memory".into());
        }
        Ok(vec![
            CachedNll {
                nll: 1.0,
                tokens: 1
            };
            requests.len().saturating_sub(self.0)
        ])
    }
}

#[test]
fn engine_failures_are_reported() {
    let cache = MemoryCache::new();
    let s = setup("e");
    let r = &RefusalFilter::default();
    let err = score_pool(&pool(), &s, r, &cache, &mut Broken(0), 4, &mut |_| {}).unwrap_err();
    assert_eq!(
        err.to_string(),
        "engine failed on a batch of 4 requests: out of memory"
    );
    let err = score_pool(&pool(), &s, r, &cache, &mut Broken(1), 4, &mut |_| {}).unwrap_err();
    assert_eq!(err.to_string(), "engine returned 3 results for 4 requests");
    assert!(matches!(
        score_pool(&pool(), &s, r, &cache, &mut Broken(0), 0, &mut |_| {}),
        Err(ScoringError::BatchSize)
    ));
    assert!(cache.is_empty());
}

#[test]
fn bad_nll_names_the_pool_item() {
    let cache = MemoryCache::new();
    let mut nan = FnScorer(|e: &PoolExample, _a: Option<&str>| CachedNll {
        nll: if e.reply().contains("kind") {
            f64::NAN
        } else {
            1.0
        },
        tokens: 1,
    });
    let err = score_pool(
        &pool(),
        &setup("e"),
        &RefusalFilter::default(),
        &cache,
        &mut nan,
        4,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err
        .to_string()
        .starts_with("pool item 1: NLL of `base` is NaN"));
}

#[test]
fn items_without_answer_tokens_are_left_out() {
    let cache = MemoryCache::new();
    let mut zero = FnScorer(|e: &PoolExample, _a: Option<&str>| CachedNll {
        nll: 0.0,
        tokens: if e.reply().contains("kind") { 0 } else { 2 },
    });
    let out = score_pool(
        &pool(),
        &setup("e"),
        &RefusalFilter::default(),
        &cache,
        &mut zero,
        4,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(out.no_answer_tokens, vec![1, 2]);
    assert_eq!(
        out.items.iter().map(|i| i.index).collect::<Vec<_>>(),
        vec![0]
    );
}
