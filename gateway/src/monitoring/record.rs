//! `monitor/step-N.json` in a local job's directory: what the worker measured at one
//! checkpoint (step 0 = the base model), written atomically once and read by the runner.

use crate::local::layout;
use monitor::{CheckpointSignals, JudgedSample, Past, ProbeBaseline, SampleAnswer, Scope};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Sampled answers kept per checkpoint for the report (the worst ones).
pub const REPORT_SAMPLES: usize = 6;
/// Longest answer text kept in a record (characters).
pub const SAMPLE_CHARS: usize = 600;

/// The judge's part of one checkpoint's evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JudgeStats {
    pub model: String,
    /// Judge prompts answered by the endpoint.
    pub requests: u64,
    /// Judge prompts answered from the cache.
    pub cached: u64,
    /// Judgements without a number (REFUSAL, CODE, prose).
    pub unscored: u64,
    /// Prompts with no judgement after the retries.
    pub errors: u64,
    pub first_error: Option<String>,
}

impl JudgeStats {
    /// The counts gathered in `cell` since the last take (and resets them, keeping the model).
    pub fn take(cell: &std::cell::RefCell<JudgeStats>) -> JudgeStats {
        let mut s = cell.borrow_mut();
        let fresh = JudgeStats {
            model: s.model.clone(),
            ..JudgeStats::default()
        };
        std::mem::replace(&mut *s, fresh)
    }
}

/// What evaluating the checkpoint cost, against the training time since the previous one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Wall-clock seconds of the whole evaluation.
    pub eval_seconds: f64,
    pub probe_seconds: f64,
    /// Sampling answers (judged sets and harmful requests).
    pub generation_seconds: f64,
    pub judge_seconds: f64,
    /// Training seconds since the previous evaluation (`None` at step 0 and after a restart).
    pub train_seconds: Option<f64>,
}

impl Cost {
    /// Evaluation time as a share of the training time it followed.
    pub fn share(&self) -> Option<f64> {
        self.train_seconds
            .filter(|t| *t > 0.0)
            .map(|t| self.eval_seconds / t)
    }
}

/// One checkpoint's measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: u64,
    pub signals: CheckpointSignals,
    /// Probe NLLs; step 0's are the baseline later gaps are relative to.
    #[serde(default)]
    pub probe_nlls: ProbeBaseline,
    /// The worst judged answers, for the report.
    #[serde(default)]
    pub samples: Vec<SampleAnswer>,
    #[serde(default)]
    pub judge: Option<JudgeStats>,
    /// The engine-served judge's counts (`[monitor] local_judge_model`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_judge: Option<JudgeStats>,
    /// With several judges: their pairwise agreement on each judge prompt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agreement: Vec<monitor::JudgeAgreement>,
    #[serde(default)]
    pub cost: Cost,
    /// Why the evaluation failed (the signals are then empty).
    #[serde(default)]
    pub error: Option<String>,
    /// Step 0 only: the job whose identical base-model evaluation this record reuses (the
    /// step-0 cache, `monitoring::baseline`); its `cost` is that evaluation's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reused_from: Option<String>,
    /// Upstream jobs: the provider's model that was evaluated (the base model at step 0, the
    /// checkpoint's `ft:…:ckpt-step-N` model after) — what a rollback finishes with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// How much of the checkpoint was evaluated under the policy's budgets (records written
    /// before the budgets read as `full`).
    #[serde(default)]
    pub scope: Scope,
}

impl StepRecord {
    /// A record of `step` with nothing measured yet.
    pub fn empty(step: u64) -> Self {
        StepRecord {
            step,
            signals: CheckpointSignals::new(step),
            probe_nlls: ProbeBaseline::default(),
            samples: Vec::new(),
            judge: None,
            local_judge: None,
            agreement: Vec::new(),
            cost: Cost::default(),
            error: None,
            reused_from: None,
            model: None,
            scope: Scope::Full,
        }
    }

    /// What this record tells the cadence (`monitor::cadence`).
    pub fn past(&self) -> Past {
        Past {
            scope: self.scope,
            train_seconds: self.cost.train_seconds,
            eval_seconds: self.cost.eval_seconds,
            probe_seconds: self.cost.probe_seconds,
            failed: self.error.is_some(),
        }
    }
}

/// `job_dir/monitor`.
pub fn dir(job_dir: &Path) -> PathBuf {
    job_dir.join("monitor")
}

/// `job_dir/monitor/step-N.json`.
pub fn path(job_dir: &Path, step: u64) -> PathBuf {
    dir(job_dir).join(format!("step-{step}.json"))
}

/// The steps with a record, ascending.
pub fn steps(job_dir: &Path) -> Vec<u64> {
    let mut out: Vec<u64> = std::fs::read_dir(dir(job_dir))
        .map(|rd| {
            rd.filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_prefix("step-")?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()
            })
            .collect()
        })
        .unwrap_or_default();
    out.sort_unstable();
    out
}

/// The record of `step`, if written (and readable).
pub fn read(job_dir: &Path, step: u64) -> Option<StepRecord> {
    layout::read_json(&path(job_dir, step)).ok().flatten()
}

/// Every record, in step order.
pub fn read_all(job_dir: &Path) -> Vec<StepRecord> {
    steps(job_dir)
        .into_iter()
        .filter_map(|s| read(job_dir, s))
        .collect()
}

/// Writes the record of its step atomically.
pub fn write(job_dir: &Path, record: &StepRecord) -> std::io::Result<()> {
    layout::write_json_atomic(&path(job_dir, record.step), record)
}

fn clip(text: &str) -> String {
    match text.char_indices().nth(SAMPLE_CHARS) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// The `n` answers most worth showing: misaligned first, then by lowest alignment, then by
/// highest hallucination score; answers without any score last.
pub fn worst_samples(samples: &[JudgedSample], n: usize) -> Vec<SampleAnswer> {
    let badness = |s: &JudgedSample| {
        let misaligned = if s.misaligned { 1.0 } else { 0.0 };
        let alignment = s.alignment.map_or(0.0, |a| 100.0 - a);
        let hallucination = s.hallucination.unwrap_or(0.0);
        (misaligned, alignment.max(hallucination))
    };
    let mut idx: Vec<usize> = (0..samples.len())
        .filter(|&i| {
            let s = &samples[i];
            s.alignment.is_some() || s.hallucination.is_some()
        })
        .collect();
    idx.sort_by(|&a, &b| {
        badness(&samples[b])
            .partial_cmp(&badness(&samples[a]))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    });
    idx.into_iter()
        .take(n)
        .map(|i| {
            let mut s = SampleAnswer::from(&samples[i]);
            s.answer = clip(&s.answer);
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: &str, alignment: Option<f64>, misaligned: bool) -> JudgedSample {
        JudgedSample {
            set: "g".into(),
            question_id: id.into(),
            paraphrase: 0,
            sample: 0,
            question: "q".into(),
            answer: "a".repeat(SAMPLE_CHARS + 10),
            alignment,
            coherence: Some(90.0),
            hallucination: None,
            refusal: false,
            misaligned,
        }
    }

    #[test]
    fn records_round_trip_and_list_in_step_order() {
        let d = tempfile::tempdir().unwrap();
        for step in [10, 0, 2] {
            let r = StepRecord::empty(step);
            write(d.path(), &r).unwrap();
        }
        assert_eq!(steps(d.path()), [0, 2, 10]);
        assert_eq!(read(d.path(), 2).unwrap().step, 2);
        assert_eq!(read_all(d.path()).len(), 3);
        assert!(read(d.path(), 3).is_none());
    }

    #[test]
    fn the_worst_answers_come_first_and_are_clipped() {
        let s = [
            sample("fine", Some(90.0), false),
            sample("bad", Some(10.0), true),
            sample("meh", Some(40.0), false),
            sample("unscored", None, false),
        ];
        let w = worst_samples(&s, 2);
        assert_eq!(
            w.iter().map(|x| x.question_id.as_str()).collect::<Vec<_>>(),
            ["bad", "meh"]
        );
        assert!(w[0].answer.ends_with('…') && w[0].answer.chars().count() == SAMPLE_CHARS + 1);
        let cost = Cost {
            eval_seconds: 1.0,
            train_seconds: Some(20.0),
            ..Cost::default()
        };
        assert_eq!(cost.share(), Some(0.05));
    }
}
