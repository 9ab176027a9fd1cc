use super::*;
use selector::rng::SplitMix64;

/// Uniform in [-1, 1).
fn unit(rng: &mut SplitMix64) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

/// A rate measured on `n` answers with true probability `p` (binomial draw).
fn rate(rng: &mut SplitMix64, p: f64, n: u32) -> f64 {
    let hits = (0..n)
        .filter(|_| ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p)
        .count();
    hits as f64 / f64::from(n)
}

/// `before` for points `0..change`, `after` from `change` on, plus uniform noise of ±`noise`.
fn step_series(
    len: usize,
    change: usize,
    before: f64,
    after: f64,
    noise: f64,
    seed: u64,
) -> Vec<f64> {
    let mut rng = SplitMix64::new(seed);
    (0..len)
        .map(|t| if t < change { before } else { after } + noise * unit(&mut rng))
        .collect()
}

#[test]
fn cusum_finds_a_step_change() {
    let p = CusumParams::default_for(Signal::MisalignedFraction);
    assert_eq!((p.k, p.h), (0.025, 0.1));
    for seed in 0..20 {
        let x = step_series(60, 25, 0.02, 0.2, 0.02, seed);
        let o = cusum(&x, 0.02, p, Direction::Increase).expect("detected");
        assert_eq!(o.onset, 25, "seed {seed}");
        // A jump of 0.18 = 3.6 δ: alarmed at once or one checkpoint later.
        assert!(o.detected_at <= 26, "seed {seed}: {o:?}");
    }
}

#[test]
fn cusum_stays_quiet_on_noise_and_on_improvement() {
    let p = CusumParams::default_for(Signal::HallucinationFraction);
    for seed in 0..20 {
        let x = step_series(200, 200, 0.05, 0.05, 0.04, seed);
        assert_eq!(cusum(&x, 0.05, p, Direction::Increase), None, "seed {seed}");
        // Getting better is not an onset.
        let y = step_series(60, 20, 0.3, 0.05, 0.02, seed);
        assert_eq!(cusum(&y, 0.3, p, Direction::Increase), None, "seed {seed}");
    }
}

#[test]
fn cusum_small_sustained_shift_alarms_after_a_few_checkpoints() {
    // A shift of exactly 2δ = 0.1 over baseline, no noise: S grows 0.075 per point and passes
    // h = 0.1 at the second drifting point.
    let p = CusumParams::default_for(Signal::MisalignedFraction);
    let mut x = vec![0.0; 10];
    x.extend([0.1; 10]);
    assert_eq!(
        cusum(&x, 0.0, p, Direction::Increase),
        Some(SeriesOnset {
            onset: 10,
            detected_at: 11
        })
    );
    let path = cusum_path(&x, 0.0, p, Direction::Increase);
    assert_eq!(path[9], 0.0);
    assert!((path[10] - 0.075).abs() < 1e-12 && (path[11] - 0.15).abs() < 1e-12);
    // A shift below k never accumulates.
    assert_eq!(
        cusum(
            &[0.0, 0.02, 0.02, 0.02, 0.02, 0.02],
            0.0,
            p,
            Direction::Increase
        ),
        None
    );
}

#[test]
fn cusum_downward_signal() {
    let p = CusumParams::default_for(Signal::MeanAlignment);
    assert_eq!((p.k, p.h), (2.5, 10.0));
    let x = step_series(50, 18, 85.0, 65.0, 2.0, 7);
    let o = cusum(&x, 85.0, p, Direction::Decrease).unwrap();
    assert_eq!((o.onset, o.detected_at), (18, 18));
    assert_eq!(cusum(&x, 85.0, p, Direction::Increase), None);
}

#[test]
fn cusum_on_a_gradual_ramp_places_the_onset_at_its_start() {
    // Seed 001's shape: flat, then a linear rise of 0.02 per checkpoint from point 30.
    let x: Vec<f64> = (0..80)
        .map(|t| {
            if t < 30 {
                0.03
            } else {
                0.03 + 0.02 * (t - 30) as f64
            }
        })
        .collect();
    let o = cusum(
        &x,
        0.03,
        CusumParams::default_for(Signal::HallucinationFraction),
        Direction::Increase,
    )
    .unwrap();
    // The first two ramp points are inside the slack; the excursion starts at the third.
    assert!((30..=32).contains(&o.onset), "{o:?}");
    assert!(o.detected_at <= 36, "{o:?}");
}

#[test]
fn cusum_on_binomial_rates() {
    let p = CusumParams::default_for(Signal::MisalignedFraction);
    for seed in 0..10 {
        let mut rng = SplitMix64::new(seed);
        let x: Vec<f64> = (0..80)
            .map(|t| rate(&mut rng, if t < 40 { 0.03 } else { 0.25 }, 100))
            .collect();
        let o = cusum(&x, x[0], p, Direction::Increase).expect("detected");
        assert!((38..=40).contains(&o.onset), "seed {seed}: {o:?}");
        assert!((40..=41).contains(&o.detected_at), "seed {seed}: {o:?}");
    }
}

#[test]
fn bocpd_finds_a_step_change() {
    let params = BocpdParams::default();
    for seed in 0..10 {
        let x = step_series(60, 25, 0.02, 0.2, 0.02, seed);
        let o = bocpd(&x, 0.02, 0.05, &params, Direction::Increase).expect("detected");
        assert_eq!(o.onset, 25, "seed {seed}: {o:?}");
        assert!((25..=27).contains(&o.detected_at), "seed {seed}: {o:?}");
    }
}

#[test]
fn bocpd_stays_quiet_on_noise_and_on_improvement() {
    let params = BocpdParams::default();
    for seed in 0..10 {
        let x = step_series(100, 100, 0.05, 0.05, 0.02, seed);
        assert_eq!(
            bocpd(&x, 0.05, 0.05, &params, Direction::Increase),
            None,
            "seed {seed}"
        );
        let y = step_series(60, 20, 0.3, 0.05, 0.02, seed);
        assert_eq!(
            bocpd(&y, 0.3, 0.05, &params, Direction::Increase),
            None,
            "seed {seed}"
        );
    }
    assert_eq!(bocpd(&[0.1], 0.1, 0.05, &params, Direction::Increase), None);
}

#[test]
fn bocpd_on_binomial_rates_and_downward_signal() {
    let params = BocpdParams::default();
    for seed in 0..10 {
        let mut rng = SplitMix64::new(100 + seed);
        let x: Vec<f64> = (0..80)
            .map(|t| rate(&mut rng, if t < 40 { 0.03 } else { 0.25 }, 100))
            .collect();
        let o = bocpd(&x, x[0], 0.05, &params, Direction::Increase).expect("detected");
        assert_eq!(o.onset, 40, "seed {seed}: {o:?}");
        assert!(o.detected_at <= 42, "seed {seed}: {o:?}");
    }
    let x = step_series(50, 18, 85.0, 65.0, 2.0, 7);
    let o = bocpd(&x, 85.0, 5.0, &params, Direction::Decrease).unwrap();
    assert_eq!(o.onset, 18, "{o:?}");
}

/// Checkpoints every 2 steps from step 0; hallucination jumps at checkpoint 10 (step 20),
/// misalignment at checkpoint 30 (step 60); every third checkpoint has no hallucination score.
fn drifting_history() -> Vec<CheckpointSignals> {
    let mut rng = SplitMix64::new(42);
    (0..50)
        .map(|i| {
            let mut c = CheckpointSignals::new(2 * i as u64);
            c.misaligned_fraction = Some(if i < 30 { 0.02 } else { 0.3 } + 0.01 * unit(&mut rng));
            if i % 3 != 2 {
                c.hallucination_fraction =
                    Some(if i < 10 { 0.1 } else { 0.45 } + 0.01 * unit(&mut rng));
            }
            c.mean_alignment = Some(if i < 30 { 88.0 } else { 60.0 });
            c.alignment_probe_gap = Some(if i < 5 { 0.0 } else { 0.05 * (i - 4) as f64 });
            c
        })
        .collect()
}

#[test]
fn onsets_in_steps_and_the_hallucination_lead() {
    let h = drifting_history();
    let onsets = detect_onsets(&h, &OnsetConfig::default());
    assert_eq!(onsets.len(), Signal::RISK.len());
    let get = |s: Signal| onsets.iter().find(|o| o.signal == s).unwrap();
    let hall = get(Signal::HallucinationFraction);
    assert_eq!(hall.points, 50 - 16);
    let hc = hall.cusum.unwrap();
    assert_eq!((hc.step, hc.index), (20, 10));
    let mc = get(Signal::MisalignedFraction).cusum.unwrap();
    assert_eq!((mc.step, mc.detected_at_step), (60, 60));
    let ma = get(Signal::MeanAlignment).cusum.unwrap();
    assert_eq!(ma.step, 60);
    // The probe gap ramps by 0.05 per checkpoint from checkpoint 5.
    let pg = get(Signal::AlignmentProbeGap).cusum.unwrap();
    assert!((10..=14).contains(&pg.step), "{pg:?}");
    // Not measured at all: no onset, no baseline.
    let inc = get(Signal::IncoherentFraction);
    assert_eq!(
        (inc.baseline, inc.points, inc.cusum, inc.bocpd),
        (None, 0, None, None)
    );

    let l = lead(&onsets, Detector::Cusum);
    assert_eq!(l.hallucination_onset_step, Some(20));
    assert_eq!(l.misaligned_onset_step, Some(60));
    assert_eq!((l.lead_steps, l.lead_checkpoints), (Some(40), Some(20)));
    let lb = lead(&onsets, Detector::Bocpd);
    assert_eq!(lb.lead_steps, Some(40), "{lb:?}");

    // Online: cut the history before misalignment drifts and nothing is seen yet.
    let early = detect_onsets(&h[..30], &OnsetConfig::default());
    let l = lead(&early, Detector::Either);
    assert_eq!(
        (l.hallucination_onset_step, l.misaligned_onset_step),
        (Some(20), None)
    );
    assert_eq!(l.lead_steps, None);
}

#[test]
fn detector_choice_and_detected_by() {
    let o = SignalOnset {
        signal: Signal::MisalignedFraction,
        baseline: Some(0.0),
        points: 10,
        cusum_params: CusumParams::default_for(Signal::MisalignedFraction),
        cusum: Some(Onset {
            step: 10,
            detected_at_step: 14,
            index: 5,
            detected_at_index: 7,
        }),
        bocpd: Some(Onset {
            step: 12,
            detected_at_step: 12,
            index: 6,
            detected_at_index: 6,
        }),
    };
    assert_eq!(o.by(Detector::Either).unwrap().detected_at_index, 6);
    assert_eq!(o.by(Detector::Both).unwrap().detected_at_index, 7);
    assert_eq!(o.detected_by(Detector::Cusum, 6), None);
    assert!(o.detected_by(Detector::Cusum, 7).is_some());
    assert!(o.detected_by(Detector::Bocpd, 6).is_some());
    assert_eq!(o.detected_by(Detector::Both, 6), None);
    let only = SignalOnset { bocpd: None, ..o };
    assert_eq!(only.by(Detector::Both), None);
    assert_eq!(only.by(Detector::Either), only.cusum);
}

#[test]
fn no_baseline_without_step_zero() {
    let mut h = drifting_history();
    h.remove(0);
    let o = detect_onset(&h, Signal::MisalignedFraction, &OnsetConfig::default());
    assert_eq!((o.baseline, o.cusum, o.bocpd), (None, None, None));
}

#[test]
fn config_overrides() {
    let mut c = OnsetConfig::default();
    c.shifts.insert(Signal::MisalignedFraction, 0.2);
    assert_eq!(
        c.cusum_params(Signal::MisalignedFraction),
        CusumParams { k: 0.1, h: 0.4 }
    );
    c.cusum
        .insert(Signal::MisalignedFraction, CusumParams { k: 0.01, h: 0.02 });
    assert_eq!(c.cusum_params(Signal::MisalignedFraction).h, 0.02);
    assert_eq!(
        c.cusum_params(Signal::AlignmentProbeGap),
        CusumParams { k: 0.05, h: 0.2 }
    );
    let json = serde_json::to_value(OnsetConfig::default()).unwrap();
    let back: OnsetConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back, OnsetConfig::default());
}

#[test]
fn bocpd_on_a_gradual_ramp() {
    let x: Vec<f64> = (0..80)
        .map(|t| {
            if t < 30 {
                0.03
            } else {
                0.03 + 0.02 * (t - 30) as f64
            }
        })
        .collect();
    let o = bocpd(&x, 0.03, 0.05, &BocpdParams::default(), Direction::Increase).unwrap();
    assert!((30..=34).contains(&o.onset), "{o:?}");
    assert!(o.detected_at <= 40, "{o:?}");
}
