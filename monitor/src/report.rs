//! The per-job safety report: numbers as JSON, and a self-contained HTML page (inline CSS and
//! SVG, no scripts, no external resources) that a person can read.
//!
//! [`Report::build`] takes what the monitor recorded (signals per checkpoint, rules, policy
//! summary, sample answers) and derives the rest the same way the live monitor did: onsets
//! ([`crate::onset`]), the hallucination lead, and the rule evaluations ([`crate::rules`]).
//! [`Report::to_json`] and [`Report::to_html`] render it. Plots (one per panel, steps on x):
//! training and in-domain loss; misaligned fraction; hallucination fraction; incoherent
//! fraction; mean alignment; the probe gaps. Each marks the onsets of its signals (dashed,
//! CUSUM and BOCPD) and every action taken (solid, coloured by action), and a rollback target.

use crate::onset::{detect_onsets, lead, Detector, Lead, OnsetConfig, SignalOnset};
use crate::rules::{evaluate, Evaluation, Firing, RollbackTarget, Rule, RuleAction};
use crate::signals::{CheckpointSignals, Denominator, Signal, Thresholds};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// A sampled answer shown in the report (at the worst checkpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleAnswer {
    pub question_id: String,
    pub question: String,
    pub answer: String,
    pub alignment: Option<f64>,
    pub coherence: Option<f64>,
    pub hallucination: Option<f64>,
    /// Classified misaligned (see [`crate::signals::classify`]).
    pub misaligned: bool,
}

/// The policy as applied to the job, for the report's policy section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicySummary {
    /// The policy's name (file stem) and the set's version hash, if known.
    pub name: String,
    pub version: Option<String>,
    pub thresholds: Thresholds,
    pub denominator: Denominator,
    pub rules: Vec<Rule>,
    /// Anything else worth showing, in order (e.g. the Interleaving summary: method, fraction,
    /// examples mixed; the regularizer; the evaluation sets and samples per question).
    pub details: Vec<(String, String)>,
}

/// What the report is built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportInput {
    pub job_id: String,
    pub base_model: String,
    /// The job's status as the API shows it (`running`, `succeeded`, …), if known.
    pub status: Option<String>,
    pub policy: PolicySummary,
    /// Signals per checkpoint in step order; `history[0]` is step 0 (the base model).
    pub history: Vec<CheckpointSignals>,
    pub onset: OnsetConfig,
    /// Answers at [`Report::worst_step`] (see [`worst_checkpoint`]).
    pub samples: Vec<SampleAnswer>,
}

/// The rendered numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub job_id: String,
    pub base_model: String,
    pub status: Option<String>,
    pub policy: PolicySummary,
    pub history: Vec<CheckpointSignals>,
    pub onsets: Vec<SignalOnset>,
    /// The hallucination lead by CUSUM and by BOCPD.
    pub lead: Vec<Lead>,
    /// Every rule firing that was new at its checkpoint (the events a live monitor raised).
    pub actions: Vec<Firing>,
    /// The rules at the last checkpoint.
    pub latest: Option<Evaluation>,
    /// The checkpoint with the highest misaligned fraction (ties: hallucination, then later).
    pub worst_step: Option<u64>,
    pub samples: Vec<SampleAnswer>,
}

/// The position of the worst checkpoint: highest misaligned fraction, ties broken by the
/// higher hallucination fraction, then the later checkpoint; `None` when neither was measured
/// after step 0.
pub fn worst_checkpoint(history: &[CheckpointSignals]) -> Option<usize> {
    let key = |c: &CheckpointSignals| {
        (
            c.misaligned_fraction.unwrap_or(f64::NEG_INFINITY),
            c.hallucination_fraction.unwrap_or(f64::NEG_INFINITY),
        )
    };
    history
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            c.step > 0 && (c.misaligned_fraction.is_some() || c.hallucination_fraction.is_some())
        })
        .max_by(|(i, a), (j, b)| {
            key(a)
                .partial_cmp(&key(b))
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(i.cmp(j))
        })
        .map(|(i, _)| i)
}

impl Report {
    pub fn build(input: ReportInput) -> Report {
        let mut onset_cfg = input.onset.clone();
        for r in &input.policy.rules {
            if !onset_cfg.signals.contains(&r.metric) && Signal::RISK.contains(&r.metric) {
                onset_cfg.signals.push(r.metric);
            }
        }
        let onsets = detect_onsets(&input.history, &onset_cfg);
        let lead = vec![
            lead(&onsets, Detector::Cusum),
            lead(&onsets, Detector::Bocpd),
        ];
        let evaluations = evaluate(&input.policy.rules, &input.history, &input.onset);
        let actions = evaluations
            .iter()
            .flat_map(|e| e.firings.iter().filter(|f| f.new).cloned())
            .collect();
        let worst_step = worst_checkpoint(&input.history).map(|i| input.history[i].step);
        Report {
            job_id: input.job_id,
            base_model: input.base_model,
            status: input.status,
            policy: input.policy,
            history: input.history,
            onsets,
            lead,
            actions,
            latest: evaluations.last().cloned(),
            worst_step,
            samples: input.samples,
        }
    }

    /// The report as pretty JSON (`?format=json`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    /// The report as one self-contained HTML page.
    pub fn to_html(&self) -> String {
        let mut h = String::with_capacity(64 * 1024);
        let title = format!("tuneguard safety report — job {}", self.job_id);
        let _ = write!(
            h,
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{}</title>\n<style>{}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
            esc(&title),
            CSS,
            esc(&title)
        );
        self.summary_html(&mut h);
        h.push_str("<h2>Trajectories</h2>\n<div class=\"plots\">\n");
        for panel in PANELS {
            h.push_str(&self.panel_svg(panel));
        }
        h.push_str("</div>\n");
        self.onsets_html(&mut h);
        self.actions_html(&mut h);
        self.policy_html(&mut h);
        self.samples_html(&mut h);
        h.push_str("</body>\n</html>\n");
        h
    }

    fn summary_html(&self, h: &mut String) {
        let last = self.history.last();
        let latest = self.latest.as_ref();
        let rows: Vec<(&str, String)> = vec![
            ("Job", self.job_id.clone()),
            ("Base model", self.base_model.clone()),
            ("Status", self.status.clone().unwrap_or_else(|| "—".into())),
            ("Policy", self.policy.name.clone()),
            ("Checkpoints evaluated", self.history.len().to_string()),
            ("Last step", last.map_or("—".into(), |c| c.step.to_string())),
            (
                "Action at the last checkpoint",
                latest.map_or("none".into(), |e| action_text(e.action, e.rollback_to)),
            ),
            (
                "Worst checkpoint",
                self.worst_step.map_or("—".into(), |s| format!("step {s}")),
            ),
        ];
        h.push_str("<table class=\"kv\">\n");
        for (k, v) in rows {
            let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
        }
        for l in &self.lead {
            let text = match (l.lead_steps, l.lead_checkpoints) {
                (Some(s), Some(c)) => format!(
                    "{s} steps ({c} checkpoints): hallucination onset at step {}, misalignment onset at step {}",
                    l.hallucination_onset_step.unwrap_or_default(),
                    l.misaligned_onset_step.unwrap_or_default()
                ),
                _ => format!(
                    "— (hallucination onset: {}; misalignment onset: {})",
                    opt_step(l.hallucination_onset_step),
                    opt_step(l.misaligned_onset_step)
                ),
            };
            let _ = writeln!(
                h,
                "<tr><th>Hallucination lead ({})</th><td>{}</td></tr>",
                detector_name(l.detector),
                esc(&text)
            );
        }
        h.push_str("</table>\n");
    }

    fn panel_svg(&self, panel: &Panel) -> String {
        let series: Vec<PlotSeries> = panel
            .signals
            .iter()
            .map(|(s, color)| PlotSeries {
                name: s.name(),
                color,
                points: self
                    .history
                    .iter()
                    .filter_map(|c| {
                        s.get(c)
                            .filter(|v| v.is_finite())
                            .map(|v| (c.step as f64, v))
                    })
                    .collect(),
            })
            .collect();
        let mut marks = Vec::new();
        for (s, color) in panel.signals {
            if let Some(o) = self.onsets.iter().find(|o| o.signal == *s) {
                if let Some(c) = o.cusum {
                    marks.push(Mark {
                        x: c.step as f64,
                        label: format!("{} onset (CUSUM)", s.name()),
                        short: "C".into(),
                        color,
                        dashed: true,
                    });
                }
                if let Some(b) = o.bocpd {
                    marks.push(Mark {
                        x: b.step as f64,
                        label: format!("{} onset (BOCPD)", s.name()),
                        short: "B".into(),
                        color,
                        dashed: true,
                    });
                }
            }
        }
        for f in &self.actions {
            if f.action == RuleAction::None {
                continue;
            }
            marks.push(Mark {
                x: f.step as f64,
                label: format!(
                    "{} at step {}: {} = {}",
                    f.action.name(),
                    f.step,
                    f.metric,
                    f.value.map_or("—".into(), fmt_num)
                ),
                short: f.action.name().to_string(),
                color: action_color(f.action),
                dashed: false,
            });
        }
        if let Some(Evaluation {
            rollback_to: Some(RollbackTarget::Checkpoint { step, .. }),
            ..
        }) = &self.latest
        {
            marks.push(Mark {
                x: *step as f64,
                label: format!("rollback target: step {step}"),
                short: "target".into(),
                color: "#2a9d3a",
                dashed: true,
            });
        }
        let steps: Vec<f64> = self.history.iter().map(|c| c.step as f64).collect();
        line_plot(
            panel.title,
            panel.unit,
            &series,
            &marks,
            &steps,
            panel.fraction,
        )
    }

    fn onsets_html(&self, h: &mut String) {
        h.push_str(
            "<h2>Onsets</h2>\n<table>\n<tr><th>signal</th><th>step-0 value</th><th>checkpoints</th>\
             <th>CUSUM onset</th><th>CUSUM detected</th><th>BOCPD onset</th><th>BOCPD detected</th></tr>\n",
        );
        for o in &self.onsets {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                o.signal,
                o.baseline.map_or("not measured".into(), fmt_num),
                o.points,
                opt_step(o.cusum.map(|x| x.step)),
                opt_step(o.cusum.map(|x| x.detected_at_step)),
                opt_step(o.bocpd.map(|x| x.step)),
                opt_step(o.bocpd.map(|x| x.detected_at_step)),
            );
        }
        h.push_str("</table>\n");
    }

    fn actions_html(&self, h: &mut String) {
        h.push_str("<h2>Rule firings</h2>\n");
        if self.actions.is_empty() {
            h.push_str("<p>No rule fired.</p>\n");
            return;
        }
        h.push_str(
            "<table>\n<tr><th>step</th><th>rule</th><th>metric</th><th>value</th>\
             <th>threshold</th><th>onset</th><th>action</th></tr>\n",
        );
        for f in &self.actions {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>#{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td class=\"act-{}\">{}</td></tr>",
                f.step,
                f.rule + 1,
                f.metric,
                f.value.map_or("—".into(), fmt_num),
                esc(&threshold_text(f.above, f.below)),
                f.onset.map_or("—".into(), |o| format!(
                    "step {} (seen at {})",
                    o.step, o.detected_at_step
                )),
                f.action.name(),
                f.action.name()
            );
        }
        h.push_str("</table>\n");
        if let Some(e) = &self.latest {
            if let Some(t) = e.rollback_to {
                let _ = writeln!(
                    h,
                    "<p>{}</p>",
                    esc(&action_text(RuleAction::Rollback, Some(t)))
                );
            }
        }
    }

    fn policy_html(&self, h: &mut String) {
        let p = &self.policy;
        let t = &p.thresholds;
        h.push_str("<h2>Policy applied</h2>\n<table class=\"kv\">\n");
        let mut rows: Vec<(String, String)> = vec![
            (
                "Policy".into(),
                match &p.version {
                    Some(v) => format!("{} (set {v})", p.name),
                    None => p.name.clone(),
                },
            ),
            (
                "Misaligned".into(),
                format!(
                    "alignment < {} and coherence > {}",
                    fmt_num(t.misaligned_alignment_below),
                    fmt_num(t.misaligned_coherence_above)
                ),
            ),
            (
                "Denominator".into(),
                match p.denominator {
                    Denominator::Coherent => "coherent, non-refusal answers (Betley et al.)".into(),
                    Denominator::All => "all answers".into(),
                },
            ),
            (
                "Incoherent".into(),
                format!("coherence < {}", fmt_num(t.incoherent_coherence_below)),
            ),
            (
                "Hallucinated".into(),
                format!(
                    "hallucination score > {}",
                    fmt_num(t.hallucination_score_above)
                ),
            ),
        ];
        for (i, r) in p.rules.iter().enumerate() {
            let mut cond = vec![];
            if r.above.is_some() || r.below.is_some() {
                cond.push(format!("{} {}", r.metric, threshold_text(r.above, r.below)));
            }
            if r.onset {
                cond.push(format!(
                    "{} onset ({})",
                    r.metric,
                    detector_name(r.detector)
                ));
            }
            rows.push((
                format!("Rule #{}", i + 1),
                format!("{} → {}", cond.join(" and "), r.action.name()),
            ));
        }
        rows.extend(p.details.iter().cloned());
        for (k, v) in rows {
            let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(&k), esc(&v));
        }
        h.push_str("</table>\n");
    }

    fn samples_html(&self, h: &mut String) {
        let _ = writeln!(
            h,
            "<h2>Sample answers at the worst checkpoint{}</h2>",
            self.worst_step
                .map_or(String::new(), |s| format!(" (step {s})"))
        );
        if self.samples.is_empty() {
            h.push_str("<p>No sample answers recorded.</p>\n");
            return;
        }
        h.push_str(
            "<table class=\"samples\">\n<tr><th>question</th><th>answer</th><th>alignment</th>\
             <th>coherence</th><th>hallucination</th></tr>\n",
        );
        for s in &self.samples {
            let _ = writeln!(
                h,
                "<tr{}><td><b>{}</b><br>{}</td><td class=\"answer\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                if s.misaligned { " class=\"misaligned\"" } else { "" },
                esc(&s.question_id),
                esc(&s.question),
                esc(&s.answer),
                s.alignment.map_or("—".into(), fmt_num),
                s.coherence.map_or("—".into(), fmt_num),
                s.hallucination.map_or("—".into(), fmt_num),
            );
        }
        h.push_str("</table>\n");
    }
}

fn opt_step(s: Option<u64>) -> String {
    s.map_or("—".into(), |s| s.to_string())
}

fn detector_name(d: Detector) -> &'static str {
    match d {
        Detector::Cusum => "CUSUM",
        Detector::Bocpd => "BOCPD",
        Detector::Either => "CUSUM or BOCPD",
        Detector::Both => "CUSUM and BOCPD",
    }
}

fn threshold_text(above: Option<f64>, below: Option<f64>) -> String {
    match (above, below) {
        (Some(a), Some(b)) => format!("> {} or < {}", fmt_num(a), fmt_num(b)),
        (Some(a), None) => format!("> {}", fmt_num(a)),
        (None, Some(b)) => format!("< {}", fmt_num(b)),
        (None, None) => "—".into(),
    }
}

fn action_text(action: RuleAction, rollback: Option<RollbackTarget>) -> String {
    match (action, rollback) {
        (RuleAction::Rollback, Some(RollbackTarget::Checkpoint { step, .. })) => {
            format!("rollback to the checkpoint at step {step}")
        }
        (RuleAction::Rollback, Some(RollbackTarget::NoCheckpoint)) => {
            "rollback: no checkpoint is under every rule".into()
        }
        (a, _) => a.name().into(),
    }
}

fn action_color(a: RuleAction) -> &'static str {
    match a {
        RuleAction::None => "#999999",
        RuleAction::Warn => "#e08a00",
        RuleAction::Pause => "#7b3fb5",
        RuleAction::Rollback => "#1f5fbf",
        RuleAction::Cancel => "#c62828",
    }
}

/// HTML/XML text and attribute escaping.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A number for people: up to 4 significant digits, no trailing zeros.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v == 0.0 {
        return "0".into();
    }
    let mag = v.abs().log10().floor() as i32;
    let decimals = (3 - mag).clamp(0, 6) as usize;
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

struct Panel {
    title: &'static str,
    unit: &'static str,
    signals: &'static [(Signal, &'static str)],
    /// A rate: the y axis starts at 0.
    fraction: bool,
}

const PANELS: &[Panel] = &[
    Panel {
        title: "Loss",
        unit: "nats / token",
        signals: &[(Signal::Loss, "#444444"), (Signal::InDomainLoss, "#1f77b4")],
        fraction: false,
    },
    Panel {
        title: "Misaligned fraction",
        unit: "share of answers",
        signals: &[(Signal::MisalignedFraction, "#c62828")],
        fraction: true,
    },
    Panel {
        title: "Hallucination fraction",
        unit: "share of answers",
        signals: &[(Signal::HallucinationFraction, "#e08a00")],
        fraction: true,
    },
    Panel {
        title: "Incoherent fraction",
        unit: "share of answers",
        signals: &[(Signal::IncoherentFraction, "#6d4c41")],
        fraction: true,
    },
    Panel {
        title: "Mean alignment",
        unit: "judge score 0–100",
        signals: &[(Signal::MeanAlignment, "#2a9d3a")],
        fraction: false,
    },
    Panel {
        title: "Probe gaps (relative to step 0)",
        unit: "nats / token",
        signals: &[
            (Signal::AlignmentProbeGap, "#7b3fb5"),
            (Signal::HonestyProbeGap, "#00838f"),
        ],
        fraction: false,
    },
];

struct PlotSeries<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

struct Mark<'a> {
    x: f64,
    label: String,
    short: String,
    color: &'a str,
    dashed: bool,
}

/// Plot size (the SVG's width and height in CSS pixels).
pub const PLOT_WIDTH: u32 = 720;
pub const PLOT_HEIGHT: u32 = 260;

const ML: f64 = 64.0;
const MR: f64 = 16.0;
const MT: f64 = 34.0;
const MB: f64 = 40.0;

/// A "nice" tick spacing near `range / target`.
fn nice_step(range: f64, target: f64) -> f64 {
    let raw = (range / target).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 2.5 {
        2.5
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn ticks(lo: f64, hi: f64, target: f64) -> (f64, f64, Vec<f64>) {
    let step = nice_step(hi - lo, target);
    let lo = (lo / step).floor() * step;
    let hi = (hi / step).ceil() * step;
    let n = ((hi - lo) / step).round() as usize;
    let t = (0..=n).map(|i| lo + step * i as f64).collect();
    (lo, hi, t)
}

fn line_plot(
    title: &str,
    unit: &str,
    series: &[PlotSeries<'_>],
    marks: &[Mark<'_>],
    steps: &[f64],
    fraction: bool,
) -> String {
    let (w, hgt) = (f64::from(PLOT_WIDTH), f64::from(PLOT_HEIGHT));
    let mut s = String::with_capacity(8 * 1024);
    let _ = write!(
        s,
        "<figure class=\"plot\"><svg role=\"img\" aria-label=\"{t}\" width=\"{PLOT_WIDTH}\" height=\"{PLOT_HEIGHT}\" \
         viewBox=\"0 0 {PLOT_WIDTH} {PLOT_HEIGHT}\"><title>{t}</title>\
         <rect x=\"0\" y=\"0\" width=\"{PLOT_WIDTH}\" height=\"{PLOT_HEIGHT}\" fill=\"#ffffff\"/>\
         <text x=\"{ML}\" y=\"20\" class=\"title\">{t}</text>",
        t = esc(title)
    );
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|p| p.points.iter().copied())
        .collect();
    let (x0, x1) = {
        let lo = steps.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = steps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if lo.is_finite() && hi > lo {
            (lo, hi)
        } else if lo.is_finite() {
            (lo - 1.0, lo + 1.0)
        } else {
            (0.0, 1.0)
        }
    };
    let (mut y0, mut y1) = all
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
    if all.is_empty() {
        (y0, y1) = (0.0, 1.0);
    }
    if fraction {
        y0 = 0.0;
        y1 = y1.max(0.1);
    } else if (y1 - y0).abs() < 1e-9 {
        y0 -= 0.5;
        y1 += 0.5;
    }
    if !fraction && y0 > 0.0 && y0 < 0.25 * y1 {
        y0 = 0.0;
    }
    let (y0, y1, yt) = ticks(y0, y1, 4.0);
    let (_, _, xt_all) = ticks(x0, x1, 6.0);
    let xt: Vec<f64> = xt_all
        .into_iter()
        .filter(|x| *x >= x0 - 1e-9 && *x <= x1 + 1e-9)
        .collect();
    let pw = w - ML - MR;
    let ph = hgt - MT - MB;
    let sx = |x: f64| ML + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| MT + ph - (y - y0) / (y1 - y0) * ph;

    // Grid and axes.
    for y in &yt {
        let py = sy(*y);
        let _ = write!(
            s,
            "<line x1=\"{ML}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" class=\"grid\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>",
            ML + pw,
            ML - 6.0,
            py + 4.0,
            fmt_num(*y)
        );
    }
    for x in &xt {
        let px = sx(*x);
        let _ = write!(
            s,
            "<line x1=\"{px:.1}\" y1=\"{:.1}\" x2=\"{px:.1}\" y2=\"{:.1}\" class=\"axis\"/>\
             <text x=\"{px:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"middle\">{}</text>",
            MT + ph,
            MT + ph + 4.0,
            MT + ph + 16.0,
            fmt_num(*x)
        );
    }
    let _ = write!(
        s,
        "<line x1=\"{ML}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" class=\"axis\"/>\
         <line x1=\"{ML}\" y1=\"{MT}\" x2=\"{ML}\" y2=\"{:.1}\" class=\"axis\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"middle\">step</text>\
         <text x=\"14\" y=\"{:.1}\" class=\"tick\" text-anchor=\"middle\" transform=\"rotate(-90 14 {:.1})\">{}</text>",
        MT + ph,
        ML + pw,
        MT + ph,
        MT + ph,
        ML + pw / 2.0,
        hgt - 6.0,
        MT + ph / 2.0,
        MT + ph / 2.0,
        esc(unit)
    );

    // Marks under the lines.
    for (i, m) in marks.iter().enumerate() {
        if m.x < x0 - 1e-9 || m.x > x1 + 1e-9 {
            continue;
        }
        let px = sx(m.x);
        let _ = write!(
            s,
            "<g class=\"mark\"><title>{}</title><line x1=\"{px:.1}\" y1=\"{MT}\" x2=\"{px:.1}\" y2=\"{:.1}\" \
             stroke=\"{}\" stroke-width=\"1.5\"{}/><text x=\"{:.1}\" y=\"{:.1}\" class=\"marklabel\" fill=\"{}\">{}</text></g>",
            esc(&m.label),
            MT + ph,
            m.color,
            if m.dashed { " stroke-dasharray=\"5 4\"" } else { "" },
            px + 3.0,
            MT + 10.0 + 11.0 * (i % 3) as f64,
            m.color,
            esc(&m.short)
        );
    }

    // Lines and points.
    let mut any = false;
    for p in series {
        if p.points.is_empty() {
            continue;
        }
        any = true;
        let pts: Vec<String> = p
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let _ = write!(
            s,
            "<polyline class=\"series\" data-signal=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
            p.name,
            p.color,
            pts.join(" ")
        );
        if p.points.len() <= 120 {
            for (x, y) in &p.points {
                let _ = write!(
                    s,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{}\"><title>{} at step {}: {}</title></circle>",
                    sx(*x),
                    sy(*y),
                    p.color,
                    p.name,
                    fmt_num(*x),
                    fmt_num(*y)
                );
            }
        }
    }
    if !any {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"empty\" text-anchor=\"middle\">not measured</text>",
            ML + pw / 2.0,
            MT + ph / 2.0
        );
    }

    // Legend.
    let mut lx = w - MR;
    for p in series.iter().rev() {
        let tw = 7.0 * p.name.len() as f64 + 22.0;
        lx -= tw;
        let _ = write!(
            s,
            "<rect x=\"{lx:.1}\" y=\"12\" width=\"12\" height=\"3\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"18\" class=\"legend\">{}</text>",
            p.color,
            lx + 16.0,
            p.name
        );
    }
    s.push_str("</svg></figure>\n");
    s
}

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;\
color:#222;background:#fafafa;max-width:1520px}h1{font-size:22px}h2{font-size:18px;margin-top:28px}\
table{border-collapse:collapse;margin:8px 0;background:#fff}th,td{border:1px solid #ddd;\
padding:4px 8px;text-align:left;vertical-align:top;font-size:13px}table.kv th{background:#f2f2f2}\
.plots{display:flex;flex-wrap:wrap;gap:12px}.plot{margin:0;border:1px solid #ddd;background:#fff}\
svg text{font-family:system-ui,sans-serif}.title{font-size:14px;font-weight:600;fill:#222}\
.tick{font-size:11px;fill:#555}.legend{font-size:11px;fill:#333}.marklabel{font-size:10px}\
.empty{font-size:13px;fill:#999}.grid{stroke:#eee;stroke-width:1}.axis{stroke:#888;stroke-width:1}\
td.answer{white-space:pre-wrap;max-width:640px}tr.misaligned td{background:#fdecea}\
.act-warn{color:#e08a00}.act-pause{color:#7b3fb5}.act-rollback{color:#1f5fbf}.act-cancel{color:#c62828}";

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
