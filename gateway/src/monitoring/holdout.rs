//! `holdout_examples`: the client's last n examples of the transformed dataset are kept out of
//! training and scored at every checkpoint (`in_domain_loss`). Safety examples interleaved by
//! the transform step (their positions are in the manifest) are never held out. The split is
//! a pure function of the dataset and the manifest, so a resumed job trains on the same lines.

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

/// Writes `dir/train.jsonl` and `dir/holdout.jsonl` from `dataset`; returns their paths.
/// Errors when holding out `n` would leave nothing to train on.
pub fn write_split(
    dataset: &Path,
    manifest: Option<&serde_json::Value>,
    n: usize,
    dir: &Path,
) -> Result<(PathBuf, PathBuf), String> {
    let text = std::fs::read_to_string(dataset)
        .map_err(|e| format!("reading {}: {e}", dataset.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let inserted = manifest.map(inserted_positions).unwrap_or_default();
    let client = lines.len() - inserted.iter().filter(|&&p| p < lines.len()).count();
    if n >= client {
        return Err(format!(
            "monitor.holdout_examples = {n} leaves no example to train on ({client} client examples)"
        ));
    }
    let (train, held) = split(&lines, &inserted, n);
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
        let (t, h) = write_split(&data, Some(&m), 1, &d.path().join("split")).unwrap();
        assert_eq!(std::fs::read_to_string(h).unwrap(), "d\n");
        assert_eq!(std::fs::read_to_string(t).unwrap(), "a\nb\nS\nc\nT\n");
        let e = write_split(&data, Some(&m), 4, &d.path().join("x")).unwrap_err();
        assert!(e.contains("holdout_examples = 4"), "{e}");
    }
}
