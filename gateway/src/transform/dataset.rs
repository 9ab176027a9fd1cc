//! Streaming the client's dataset into the transformed one: inoculate each client example,
//! insert the pool examples `selector::plan_mix` picked at the positions it planned, record
//! the manifest.

use super::error::TransformError;
use super::inoculate::inoculate_line;
use super::plan::{InoculationMode, InterleaveSpec, ScoredSpec, TransformPlan};
use selector::{plan_mix, unscored_candidates, Method, MixConfig, PlanError, SelectError};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

/// One interleaved pool item: its 0-based line index among the pool's examples, and its
/// 0-based position among the output's examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Inserted {
    pub pool_index: u64,
    pub position: u64,
}

/// What the transform did, stored beside the dataset and shown to operators.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    pub client_examples: u64,
    pub output_examples: u64,
    /// `{"mode", "system_prompt"}` or null.
    pub inoculation: Value,
    /// `{"method": "none", "inserted": []}`, or selector's manifest (`method, fraction, seed,
    /// placement, client_examples, total_examples, inserted: [{pool_index, position}]`) plus
    /// `pool` and `pool_examples`.
    pub interleave: Value,
    #[serde(skip)]
    pub inserted: Vec<Inserted>,
}

/// The pool items one interleaving inserts: each item's output line by pool index, where it
/// goes, and the manifest's `interleave` description.
#[derive(Debug, Clone, PartialEq)]
pub struct Interleaved {
    pub lines: HashMap<u64, String>,
    /// Sorted by position.
    pub inserted: Vec<Inserted>,
    pub desc: Value,
}

/// Computes an engine-backed interleaving ([`InterleaveSpec::Scored`]) for a client dataset
/// of the given example count.
pub type ScoredInterleaver<'a> =
    dyn FnMut(&ScoredSpec, u64) -> Result<Interleaved, TransformError> + 'a;

/// Applies `plan` to the JSONL at `client` (already screened), writing the result to `out`.
/// Engine-backed methods are [`TransformError::MethodUnavailable`] here; see
/// [`transform_dataset_with`].
pub fn transform_dataset(
    client: &Path,
    plan: &TransformPlan,
    out: &mut impl Write,
) -> Result<Manifest, TransformError> {
    transform_dataset_with(client, plan, out, &mut |spec, _| {
        Err(TransformError::MethodUnavailable {
            method: spec.method.as_str().to_string(),
            reason: "this transformer has no engine (configure [interleave] models)".into(),
        })
    })
}

/// [`transform_dataset`] with `scored` computing plus / plusplus / on_policy selections.
pub fn transform_dataset_with(
    client: &Path,
    plan: &TransformPlan,
    out: &mut impl Write,
    scored: &mut ScoredInterleaver<'_>,
) -> Result<Manifest, TransformError> {
    let n = count_examples(client)?;
    let Interleaved {
        lines: pool_lines,
        inserted,
        desc: interleave,
    } = match &plan.interleave {
        InterleaveSpec::None => Interleaved {
            lines: HashMap::new(),
            inserted: Vec::new(),
            desc: json!({"method": "none", "inserted": []}),
        },
        InterleaveSpec::Random {
            fraction,
            pool,
            seed,
            placement,
        } => {
            let pool_n = count_examples(pool)?;
            let config = MixConfig {
                method: Method::Random,
                fraction: *fraction,
                seed: *seed,
                placement: *placement,
            };
            let candidates = unscored_candidates(to_usize(pool_n));
            let (plan, mix) = plan_mix(&config, to_usize(n), &candidates)
                .map_err(|e| mix_error(e, pool, pool_n))?;
            let inserted: Vec<Inserted> = plan
                .entries
                .iter()
                .map(|e| Inserted {
                    pool_index: e.pool_index as u64,
                    position: e.position as u64,
                })
                .collect();
            let picks: Vec<u64> = inserted.iter().map(|i| i.pool_index).collect();
            let lines = read_pool_items(pool, &picks)?;
            let mut desc = serde_json::to_value(&mix).unwrap_or(Value::Null);
            desc["pool"] = json!(pool.display().to_string());
            desc["pool_examples"] = json!(pool_n);
            Interleaved {
                lines,
                inserted,
                desc,
            }
        }
        InterleaveSpec::Scored(spec) => {
            let mut got = scored(spec, n)?;
            got.inserted.sort_by_key(|i| i.position);
            got
        }
    };
    let mut next = inserted.iter().peekable();
    let mut written: u64 = 0;
    let mut emit = |text: &str, written: &mut u64| -> Result<(), TransformError> {
        out.write_all(text.as_bytes())
            .and_then(|_| out.write_all(b"\n"))
            .map_err(|e| TransformError::io(Path::new("<transformed dataset>"), e))?;
        *written += 1;
        Ok(())
    };
    for_each_example(client, |line_no, line| {
        while let Some(ins) = next.next_if(|i| i.position == written) {
            emit(pool_line(&pool_lines, ins.pool_index), &mut written)?;
        }
        match &plan.inoculation {
            Some(inoc) => {
                let text =
                    inoculate_line(line, inoc).map_err(|reason| TransformError::BadClientLine {
                        line: line_no,
                        reason,
                    })?;
                emit(&text, &mut written)
            }
            None => emit(line, &mut written),
        }
    })?;
    for ins in next {
        emit(pool_line(&pool_lines, ins.pool_index), &mut written)?;
    }
    out.flush()
        .map_err(|e| TransformError::io(Path::new("<transformed dataset>"), e))?;
    let inoculation = match &plan.inoculation {
        None => Value::Null,
        Some(i) => json!({
            "mode": if i.mode == InoculationMode::Replace { "replace" } else { "prepend" },
            "system_prompt": i.system_prompt,
        }),
    };
    Ok(Manifest {
        client_examples: n,
        output_examples: written,
        inoculation,
        interleave,
        inserted,
    })
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The number of non-blank lines of a JSONL file (the rule of [`transform_dataset`]).
pub fn count_examples(path: &Path) -> Result<u64, TransformError> {
    for_each_example(path, |_, _| Ok(()))
}

pub(crate) fn mix_error(e: PlanError, pool: &Path, pool_n: u64) -> TransformError {
    match e {
        PlanError::Select(SelectError::PoolTooSmall { needed, .. }) => {
            TransformError::PoolTooSmall {
                pool: pool.to_path_buf(),
                size: pool_n,
                needed: needed as u64,
            }
        }
        other => TransformError::InvalidPlan {
            field: "interleave".into(),
            reason: other.to_string(),
        },
    }
}

fn pool_line(lines: &HashMap<u64, String>, idx: u64) -> &str {
    lines.get(&idx).map(String::as_str).unwrap_or_default()
}

/// Calls `f(line_no, line)` for every non-blank line (1-based numbers, `\r\n` and a BOM
/// stripped); returns how many there were.
fn for_each_example(
    path: &Path,
    mut f: impl FnMut(u64, &str) -> Result<(), TransformError>,
) -> Result<u64, TransformError> {
    let file = File::open(path).map_err(|e| TransformError::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut buf = String::new();
    let (mut line_no, mut count) = (0u64, 0u64);
    loop {
        buf.clear();
        let read = reader
            .read_line(&mut buf)
            .map_err(|e| TransformError::io(path, e))?;
        if read == 0 {
            return Ok(count);
        }
        line_no += 1;
        let mut line = buf.trim_end_matches(['\n', '\r']);
        if line_no == 1 {
            line = line.trim_start_matches('\u{feff}');
        }
        if line.trim().is_empty() {
            continue;
        }
        count += 1;
        f(line_no, line)?;
    }
}

/// Reads the picked pool examples (by 0-based example index), checking each is a chat
/// example; they are written out byte for byte as in the pool.
fn read_pool_items(pool: &Path, picks: &[u64]) -> Result<HashMap<u64, String>, TransformError> {
    let wanted: std::collections::HashSet<u64> = picks.iter().copied().collect();
    let mut lines = HashMap::with_capacity(picks.len());
    let mut idx = 0u64;
    for_each_example(pool, |line_no, line| {
        if wanted.contains(&idx) {
            let v: Value = serde_json::from_str(line).map_err(|e| TransformError::BadPoolLine {
                pool: pool.to_path_buf(),
                line: line_no,
                reason: format!("not valid JSON ({e})"),
            })?;
            if !v.get("messages").is_some_and(Value::is_array) {
                return Err(TransformError::BadPoolLine {
                    pool: pool.to_path_buf(),
                    line: line_no,
                    reason: "has no `messages` list".into(),
                });
            }
            lines.insert(idx, line.to_string());
        }
        idx += 1;
        Ok(())
    })?;
    Ok(lines)
}
