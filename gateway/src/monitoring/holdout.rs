//! `holdout_examples`: the client's last n examples of the transformed dataset are kept out of
//! training and scored at every checkpoint (`in_domain_loss`). Safety examples interleaved by
//! the transform step (their positions are in the manifest) are never held out. The split is
//! a pure function of the dataset and the manifest, so a resumed job trains on the same lines.
//!
//! What is scored is the client's example as the client sent it, not as the transform rewrote
//! it: an inoculation prompt is a training-time device the deployed model never sees, so an
//! in-domain loss measured with it in the context would flatter an inoculated job. The
//! transform keeps the client's examples in order, so the k-th client line of the dataset is
//! the k-th line of the client's training file, and the held-out rows are read from there.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Lines of `lines` held out: the last `n` whose position is not in `inserted`.
pub fn split<'a>(
    lines: &[&'a str],
    inserted: &HashSet<usize>,
    n: usize,
) -> (Vec<&'a str>, Vec<&'a str>) {
    let mut held: Vec<usize> = (0..lines.len())
        .rev()
        .filter(|i| !inserted.contains(i))
        .take(n)
        .collect();
    held.reverse();
    let held_set: HashSet<usize> = held.iter().copied().collect();
    let train = (0..lines.len())
        .filter(|i| !held_set.contains(i))
        .map(|i| lines[i])
        .collect();
    (train, held.into_iter().map(|i| lines[i]).collect())
}

/// The positions of interleaved safety examples in a transform manifest.
pub fn inserted_positions(manifest: &serde_json::Value) -> HashSet<usize> {
    manifest
        .pointer("/interleave/inserted")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|e| e.get("position")?.as_u64())
                .map(|p| p as usize)
                .collect()
        })
        .unwrap_or_default()
}

/// The last `n` of the client's `original` lines (its training file as uploaded), the rows
/// [`split`] held out of the transformed dataset; `None` when the file does not line up with
/// the dataset's `client` examples (then the transformed rows are scored).
pub fn original_rows<'a>(original: &[&'a str], client: usize, n: usize) -> Option<Vec<&'a str>> {
    (original.len() == client && n <= client).then(|| original[client - n..].to_vec())
}

fn non_empty_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// Writes `dir/train.jsonl` and `dir/holdout.jsonl` from `dataset` — the held-out rows as
/// the client's `original` training file has them, when given (see the module doc) —;
/// returns their paths. Errors when holding out `n` would leave nothing to train on.
pub fn write_split(
    dataset: &Path,
    original: Option<&Path>,
    manifest: Option<&serde_json::Value>,
    n: usize,
    dir: &Path,
) -> Result<(PathBuf, PathBuf), String> {
    let read =
        |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()));
    let text = read(dataset)?;
    let lines = non_empty_lines(&text);
    let inserted = manifest.map(inserted_positions).unwrap_or_default();
    let client = lines.len() - inserted.iter().filter(|&&p| p < lines.len()).count();
    if n >= client {
        return Err(format!(
            "monitor.holdout_examples = {n} leaves no example to train on ({client} client examples)"
        ));
    }
    let (train, mut held) = split(&lines, &inserted, n);
    // The client's file, when it can still be read (a client may delete it mid-job); else
    // the rows an earlier start of this job held out from it, so a resumed job keeps scoring
    // the same rows; else the transformed rows.
    let original_text = original.and_then(|p| read(p).ok());
    let earlier = std::fs::read_to_string(dir.join("holdout.jsonl")).ok();
    if let Some(rows) = original_text
        .as_deref()
        .and_then(|t| original_rows(&non_empty_lines(t), client, n))
    {
        held = rows;
    } else if let Some(rows) = earlier
        .as_deref()
        .map(non_empty_lines)
        .filter(|rows| rows.len() == n)
    {
        held = rows;
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let write = |name: &str, rows: &[&str]| -> Result<PathBuf, String> {
        let p = dir.join(name);
        let body: String = rows.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&p, body).map_err(|e| format!("writing {}: {e}", p.display()))?;
        Ok(p)
    };
    Ok((
        write("train.jsonl", &train)?,
        write("holdout.jsonl", &held)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_client_examples_are_held_out_never_safety_ones() {
        let lines = ["a", "b", "S", "c", "d", "T"];
        let inserted: HashSet<usize> = [2, 5].into_iter().collect();
        let (train, held) = split(&lines, &inserted, 2);
        assert_eq!(held, ["c", "d"]);
        assert_eq!(train, ["a", "b", "S", "T"]);
        let m = serde_json::json!({"interleave": {"inserted": [{"position": 2}, {"position": 5}]}});
        assert_eq!(inserted_positions(&m), inserted);
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("d.jsonl");
        std::fs::write(&data, "a\nb\nS\nc\nd\nT\n").unwrap();
        let (t, h) = write_split(&data, None, Some(&m), 1, &d.path().join("split")).unwrap();
        assert_eq!(std::fs::read_to_string(h).unwrap(), "d\n");
        assert_eq!(std::fs::read_to_string(t).unwrap(), "a\nb\nS\nc\nT\n");
        let e = write_split(&data, None, Some(&m), 4, &d.path().join("x")).unwrap_err();
        assert!(e.contains("holdout_examples = 4"), "{e}");
    }

    #[test]
    fn held_out_rows_are_the_clients_own_not_the_transformed_ones() {
        // The transform rewrote each client example (an inoculation prompt, say: a→A, …) and
        // inserted S and T; the held-out rows come from the client's file, training keeps
        // the transformed rows.
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("d.jsonl");
        std::fs::write(&data, "A\nB\nS\nC\nD\nT\n").unwrap();
        let original = d.path().join("o.jsonl");
        std::fs::write(&original, "a\nb\n\nc\nd\n").unwrap();
        let m = serde_json::json!({"interleave": {"inserted": [{"position": 2}, {"position": 5}]}});
        let dir = d.path().join("split");
        let (t, h) = write_split(&data, Some(&original), Some(&m), 2, &dir).unwrap();
        assert_eq!(std::fs::read_to_string(h).unwrap(), "c\nd\n");
        assert_eq!(std::fs::read_to_string(t).unwrap(), "A\nB\nS\nT\n");
        // Gone (a client deleted it) or unreadable before a resume: the rows held out at the
        // first start are kept.
        std::fs::remove_file(&original).unwrap();
        let (_, h) = write_split(&data, Some(&original), Some(&m), 2, &dir).unwrap();
        assert_eq!(std::fs::read_to_string(h).unwrap(), "c\nd\n");
        // A file that does not line up with the dataset's client rows is not guessed at.
        std::fs::write(&original, "a\nb\nc\n").unwrap();
        let fresh = d.path().join("fresh");
        let (_, h) = write_split(&data, Some(&original), Some(&m), 2, &fresh).unwrap();
        assert_eq!(std::fs::read_to_string(h).unwrap(), "C\nD\n");
        assert_eq!(original_rows(&["a", "b"], 2, 1), Some(vec!["b"]));
        assert_eq!(original_rows(&["a"], 2, 1), None);
    }
}
