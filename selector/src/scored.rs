//! The scored form of a pool item: what `tuneguard select` writes (one JSON line per item,
//! ranked by `score`) and what the gateway reads back to run `plus` / `plusplus`.

use crate::select::Candidate;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// One pool item with its NLLs and gap score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredItem {
    /// 0-based pool index.
    pub index: usize,
    /// `L_0`: answer-only mean NLL under the base model.
    pub base_nll: f64,
    /// `L_k` per scoring adapter, by adapter name.
    pub adapter_nlls: BTreeMap<String, f64>,
    /// The held-out adapter's name and NLL, when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out_adapter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out_nll: Option<f64>,
    /// `s_d`.
    pub score: f64,
    /// `(L_h − L_0)/(L_0 + ε)` for the held-out adapter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out_score: Option<f64>,
    pub is_refusal: bool,
    /// Answer tokens the NLLs average over.
    pub answer_tokens: u32,
}

/// Best first (`score` descending), ties by ascending pool index — the order of
/// [`crate::select`]'s ranked methods.
pub fn rank_order(a: &ScoredItem, b: &ScoredItem) -> Ordering {
    b.score.total_cmp(&a.score).then(a.index.cmp(&b.index))
}

/// The selection view of scored items.
pub fn to_candidates(items: &[ScoredItem]) -> Vec<Candidate> {
    items
        .iter()
        .map(|s| Candidate {
            index: s.index,
            score: Some(s.score),
            is_refusal: s.is_refusal,
        })
        .collect()
}

/// Recomputes `is_refusal` of scored items with `filter` (a policy's own keyword list), from
/// the replies of `pool` (indexed like the items). Fails on an index outside the pool.
pub fn refilter(
    items: &mut [ScoredItem],
    pool: &[crate::PoolExample],
    filter: &crate::RefusalFilter,
) -> Result<(), ScoredLineError> {
    for (n, item) in items.iter_mut().enumerate() {
        let ex = pool.get(item.index).ok_or_else(|| ScoredLineError {
            line: n + 1,
            reason: format!(
                "pool index {} is outside the pool ({} items): scores and pool do not match",
                item.index,
                pool.len()
            ),
        })?;
        item.is_refusal = filter.is_refusal(ex.reply());
    }
    Ok(())
}

/// A malformed line of a scored-pool file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scored pool line {line}: {reason}")]
pub struct ScoredLineError {
    pub line: usize,
    pub reason: String,
}

/// Reads a scored-pool JSONL text (as written by `tuneguard select`), blank lines skipped.
/// Items come back in file order; duplicate indexes are an error.
pub fn parse_scored(text: &str) -> Result<Vec<ScoredItem>, ScoredLineError> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if crate::jsonl::is_blank_line(l) {
            continue;
        }
        let item: ScoredItem = serde_json::from_str(l).map_err(|e| ScoredLineError {
            line: i + 1,
            reason: e.to_string(),
        })?;
        if !seen.insert(item.index) {
            return Err(ScoredLineError {
                line: i + 1,
                reason: format!("pool index {} appears twice", item.index),
            });
        }
        out.push(item);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(index: usize, score: f64) -> ScoredItem {
        ScoredItem {
            index,
            base_nll: 1.0,
            adapter_nlls: BTreeMap::from([("a".to_string(), 2.0)]),
            held_out_adapter: None,
            held_out_nll: None,
            score,
            held_out_score: None,
            is_refusal: index == 2,
            answer_tokens: 3,
        }
    }

    #[test]
    fn ranking_and_round_trip() {
        let mut items = vec![item(0, 0.5), item(1, 0.9), item(2, 0.5)];
        items.sort_by(rank_order);
        assert_eq!(
            items.iter().map(|i| i.index).collect::<Vec<_>>(),
            vec![1, 0, 2]
        );
        let text: String = items
            .iter()
            .map(|i| serde_json::to_string(i).unwrap() + "\n")
            .collect();
        assert!(text.starts_with(
            r#"{"index":1,"base_nll":1.0,"adapter_nlls":{"a":2.0},"score":0.9,"is_refusal":false,"answer_tokens":3}"#
        ));
        assert_eq!(parse_scored(&text).unwrap(), items);
        let c = to_candidates(&items);
        assert_eq!(
            c[2],
            Candidate {
                index: 2,
                score: Some(0.5),
                is_refusal: true
            }
        );
    }

    #[test]
    fn refilter_applies_a_policy_keyword_list() {
        let pool = crate::parse_pool(concat!(
            r#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"Nope, not doing it."}]}"#,
            "\n",
            r#"{"messages":[{"role":"user","content":"b"},{"role":"assistant","content":"Sure."}]}"#,
        ))
        .unwrap();
        let mut items = vec![item(1, 0.2), item(0, 0.1)];
        refilter(&mut items, &pool, &crate::RefusalFilter::new(["nope"], 10)).unwrap();
        assert_eq!((items[0].is_refusal, items[1].is_refusal), (false, true));
        let mut far = vec![item(5, 0.0)];
        let err = refilter(&mut far, &pool, &crate::RefusalFilter::default()).unwrap_err();
        assert!(err
            .to_string()
            .contains("pool index 5 is outside the pool (2 items)"));
    }

    #[test]
    fn bad_lines_are_named() {
        let good = serde_json::to_string(&item(0, 0.1)).unwrap();
        let err = parse_scored(&format!("{good}\n\n{{\"index\":1}}\n")).unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.reason.contains("missing field"));
        let err = parse_scored(&format!("{good}\n{good}\n")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "scored pool line 2: pool index 0 appears twice"
        );
    }
}
