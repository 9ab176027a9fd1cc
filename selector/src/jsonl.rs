//! One-call mixing for raw JSONL text, for the gateway: client lines and pool lines are moved
//! as they are (never reparsed), so the output bytes of each example are the input bytes.

use crate::interleave::interleave;
use crate::manifest::{plan_mix, Manifest, MixConfig, PlanError};
use crate::mix::MixError;
use crate::select::Candidate;

/// Whether a line takes no position: empty or only ASCII whitespace (the rule of every JSONL
/// reader in this crate, streaming included).
pub(crate) fn is_blank_line(line: &str) -> bool {
    line.bytes().all(|b| b.is_ascii_whitespace())
}

/// A JSONL text without its leading UTF-8 byte-order mark, if it has one (editors on
/// Windows write it; it is not part of line 1's JSON).
pub(crate) fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// The non-blank lines of a JSONL text (a leading BOM dropped); their positions are the pool
/// indexes.
pub fn jsonl_lines(text: &str) -> Vec<&str> {
    without_bom(text)
        .lines()
        .filter(|l| !is_blank_line(l))
        .collect()
}

/// The candidates of an unscored pool of `len` items (for `random` / `on_policy`).
pub fn unscored_candidates(len: usize) -> Vec<Candidate> {
    (0..len)
        .map(|index| Candidate {
            index,
            score: None,
            is_refusal: false,
        })
        .collect()
}

/// Plans the mix for `client` (its non-blank lines) over `candidates`, whose indexes point
/// into `pool_lines`, and returns the mixed JSONL text (one example per line, `\n`-terminated)
/// with its manifest.
pub fn mix_jsonl(
    config: &MixConfig,
    client: &str,
    pool_lines: &[&str],
    candidates: &[Candidate],
) -> Result<(String, Manifest), PlanError> {
    let client_lines = jsonl_lines(client);
    let (plan, manifest) = plan_mix(config, client_lines.len(), candidates)?;
    let mut safety = Vec::with_capacity(plan.entries.len());
    for e in &plan.entries {
        match pool_lines.get(e.pool_index) {
            Some(l) => safety.push(*l),
            None => {
                return Err(PlanError::Mix(MixError::PoolIndex {
                    index: e.pool_index,
                    pool_len: pool_lines.len(),
                }))
            }
        }
    }
    let mut out =
        String::with_capacity(client.len() + safety.iter().map(|l| l.len() + 1).sum::<usize>());
    for line in interleave(&plan, client_lines, safety)? {
        out.push_str(line?);
        out.push('\n');
    }
    Ok((out, manifest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::Method;

    #[test]
    fn mixes_raw_lines_byte_for_byte() {
        let client: String = (0..40).map(|i| format!("{{\"c\": {i}}}\n")).collect();
        let pool: String = (0..10).map(|i| format!("{{ \"p\" : {i} }}\n\n")).collect();
        let pool_lines = jsonl_lines(&pool);
        assert_eq!(pool_lines.len(), 10);
        let cands: Vec<Candidate> = (0..10)
            .map(|i| Candidate {
                index: i,
                score: Some(i as f64),
                is_refusal: i == 9,
            })
            .collect();
        let cfg = MixConfig::new(Method::PlusPlus);
        let (text, m) = mix_jsonl(&cfg, &client, &pool_lines, &cands).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 42);
        // Best non-refusals 8 and 7 at positions 10 and 31 (see manifest tests).
        assert_eq!(lines[10], "{ \"p\" : 8 }");
        assert_eq!(lines[31], "{ \"p\" : 7 }");
        assert_eq!(lines[9], "{\"c\": 9}");
        assert_eq!(lines[11], "{\"c\": 10}");
        assert_eq!(m.inserted.len(), 2);
        assert!(text.ends_with("{\"c\": 39}\n"));
        let (again, _) = mix_jsonl(&cfg, &client, &pool_lines, &cands).unwrap();
        assert_eq!(again, text);
    }

    #[test]
    fn random_over_unscored_pool_and_bad_indexes() {
        let client = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n";
        let cfg = MixConfig {
            fraction: 0.2,
            ..MixConfig::new(Method::Random)
        };
        let pool = ["p0", "p1", "p2"];
        let (text, m) = mix_jsonl(&cfg, client, &pool, &unscored_candidates(3)).unwrap();
        assert_eq!(text.lines().count(), 12);
        for e in &m.inserted {
            assert_eq!(text.lines().nth(e.position), Some(pool[e.pool_index]));
        }
        let err = mix_jsonl(&cfg, client, &pool[..1], &unscored_candidates(3)).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("is out of range: the pool has 1 items"),
            "{err}"
        );
    }
}
