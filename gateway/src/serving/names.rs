//! Which weights a chat request's `model` names. Pure.

/// A parsed `ft:{model}:{org}:{suffix}:{short id}[:ckpt-step-{N}]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FineTunedName {
    pub base: String,
    pub organization: String,
    pub suffix: String,
    /// The job id (`ftjob-` + short id).
    pub job_id: String,
    /// A checkpoint's step.
    pub checkpoint: Option<usize>,
}

/// Parses an `ft:` name; `None` for anything else. The base model may itself contain `:`, so
/// the fixed fields are taken from the right.
pub fn parse_fine_tuned(name: &str) -> Option<FineTunedName> {
    let rest = name.strip_prefix("ft:")?;
    let mut parts: Vec<&str> = rest.split(':').collect();
    let checkpoint = match parts.last() {
        Some(p) if p.starts_with("ckpt-step-") => {
            let n = p.strip_prefix("ckpt-step-")?.parse().ok()?;
            parts.pop();
            Some(n)
        }
        _ => None,
    };
    if parts.len() < 4 {
        return None;
    }
    let short = parts.pop()?;
    let suffix = parts.pop()?;
    let organization = parts.pop()?;
    let base = parts.join(":");
    if base.is_empty() || short.is_empty() {
        return None;
    }
    Some(FineTunedName {
        base,
        organization: organization.to_string(),
        suffix: suffix.to_string(),
        job_id: format!("ftjob-{short}"),
        checkpoint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openai_names_and_checkpoints() {
        let n = parse_fine_tuned("ft:tiny-qwen:acme:v1:abc").unwrap();
        assert_eq!(
            n,
            FineTunedName {
                base: "tiny-qwen".into(),
                organization: "acme".into(),
                suffix: "v1".into(),
                job_id: "ftjob-abc".into(),
                checkpoint: None
            }
        );
        let c = parse_fine_tuned("ft:org/model:x:acme::abc:ckpt-step-20").unwrap();
        assert_eq!(c.base, "org/model:x");
        assert_eq!(c.suffix, "");
        assert_eq!(c.checkpoint, Some(20));
        assert!(parse_fine_tuned("tiny-qwen").is_none());
        assert!(parse_fine_tuned("ft:a:b").is_none());
    }
}
