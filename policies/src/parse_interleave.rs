//! The `[interleave]` section: the method, the pool mix and the selection filters.

use crate::defaults::*;
use crate::parse::{path, positive};
use crate::reader::{Result, Section};
use crate::schema::*;

/// `(0, 1]`, the range of `fraction`.
fn fraction(s: &mut Section) -> Result<f64> {
    let f = s.f64("fraction")?.unwrap_or(DEFAULT_FRACTION);
    if f > 0.0 && f <= 1.0 {
        Ok(f)
    } else {
        Err(s.err("fraction", format!("must be in (0, 1], got {f}")))
    }
}

fn mix(s: &mut Section, method: &str) -> Result<Mix> {
    let fraction = fraction(s)?;
    let pool = path(s, "pool", &format!("when method is \"{method}\""))?;
    let seed = s.u64("seed")?.unwrap_or(0);
    let placement = s
        .choice(
            "placement",
            &[("even", Placement::Even), ("jittered", Placement::Jittered)],
        )?
        .unwrap_or(Placement::Even);
    Ok(Mix {
        fraction,
        pool,
        seed,
        placement,
    })
}

#[derive(Clone, Copy)]
enum Method {
    None,
    Random,
    Plus,
    Plusplus,
    OnPolicy,
}

pub(crate) fn interleave(mut s: Section) -> Result<Interleave> {
    let method = s
        .choice(
            "method",
            &[
                ("none", Method::None),
                ("random", Method::Random),
                ("plus", Method::Plus),
                ("plusplus", Method::Plusplus),
                ("on_policy", Method::OnPolicy),
            ],
        )?
        .unwrap_or(Method::None);
    let out = match method {
        Method::None => Interleave::None,
        Method::Random => Interleave::Random {
            mix: mix(&mut s, "random")?,
        },
        Method::OnPolicy => Interleave::OnPolicy {
            mix: mix(&mut s, "on_policy")?,
            quality: reply_quality(&mut s)?,
        },
        Method::Plus => Interleave::Plus {
            mix: mix(&mut s, "plus")?,
            gap_epsilon: positive(&mut s, "gap_epsilon", DEFAULT_GAP_EPSILON)?,
        },
        Method::Plusplus => {
            let mix = mix(&mut s, "plusplus")?;
            let gap_epsilon = positive(&mut s, "gap_epsilon", DEFAULT_GAP_EPSILON)?;
            let refusal_keywords = match s.strings("refusal_keywords")? {
                Some(k) if k.is_empty() => {
                    return Err(s.err("refusal_keywords", "must list at least one keyword"))
                }
                Some(k) => {
                    if let Some(i) = k.iter().position(|w| crate::refusal_tokens(w).is_empty()) {
                        return Err(s.err(
                            &format!("refusal_keywords[{i}]"),
                            format!(
                                "{:?} has no letter or digit, so it could never match a reply",
                                k[i]
                            ),
                        ));
                    }
                    k
                }
                None => DEFAULT_REFUSAL_KEYWORDS
                    .iter()
                    .map(|k| k.to_string())
                    .collect(),
            };
            let refusal_window_words = match s.u32("refusal_window_words")? {
                Some(0) => return Err(s.err("refusal_window_words", "must be >= 1, got 0")),
                Some(n) => n,
                None => DEFAULT_REFUSAL_WINDOW_WORDS,
            };
            Interleave::Plusplus {
                mix,
                gap_epsilon,
                refusal_keywords,
                refusal_window_words,
            }
        }
    };
    s.finish()?;
    Ok(out)
}

fn reply_quality(s: &mut Section) -> Result<ReplyQuality> {
    let d = ReplyQuality::default();
    let reject_unfinished = s.bool("reject_unfinished")?.unwrap_or(d.reject_unfinished);
    let min_reply_words = s.u32("min_reply_words")?.unwrap_or(d.min_reply_words);
    let template_markers = s.strings("template_markers")?.unwrap_or(d.template_markers);
    let repetition_ngram = match s.u32("repetition_ngram")? {
        Some(0) => return Err(s.err("repetition_ngram", "must be >= 1, got 0")),
        Some(n) => n,
        None => d.repetition_ngram,
    };
    let ratio = s
        .f64("repetition_min_distinct_ratio")?
        .unwrap_or(d.repetition_min_distinct_ratio);
    if !(0.0..=1.0).contains(&ratio) {
        return Err(s.err(
            "repetition_min_distinct_ratio",
            format!("must be in [0, 1], got {ratio}"),
        ));
    }
    Ok(ReplyQuality {
        reject_unfinished,
        min_reply_words,
        template_markers,
        repetition_ngram,
        repetition_min_distinct_ratio: ratio,
    })
}
