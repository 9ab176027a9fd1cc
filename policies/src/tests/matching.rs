use crate::*;
use std::collections::BTreeMap;
use std::path::Path;

fn set(files: &[(&str, &str)]) -> PolicySet {
    PolicySet::from_texts(Path::new("/etc/tg"), files).unwrap()
}

fn job(tenant: &str, model: &str, meta: &[(&str, &str)]) -> JobContext {
    JobContext {
        tenant: tenant.into(),
        model: model.into(),
        metadata: meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn winner(s: &PolicySet, j: &JobContext) -> String {
    s.resolve(j).unwrap().policy
}

#[test]
fn default_catches_what_nothing_else_matches() {
    let s = set(&[
        ("default.toml", ""),
        ("acme.toml", "[match]\ntenants = [\"acme\"]\n"),
    ]);
    assert_eq!(winner(&s, &job("acme", "m", &[])), "acme");
    assert_eq!(winner(&s, &job("other", "m", &[])), "default");
}

#[test]
fn every_condition_must_hold() {
    let s = set(&[
        ("default.toml", ""),
        (
            "med.toml",
            "[match]\ntenants = [\"acme\", \"beta\"]\nmodels = [\"Qwen/Qwen2.5-*\"]\nmetadata = { domain = \"medical\", tier = \"1\" }\n",
        ),
    ]);
    let meta = [("domain", "medical"), ("tier", "1"), ("extra", "x")];
    assert_eq!(
        winner(&s, &job("beta", "Qwen/Qwen2.5-7B-Instruct", &meta)),
        "med"
    );
    assert_eq!(
        winner(&s, &job("gamma", "Qwen/Qwen2.5-7B-Instruct", &meta)),
        "default"
    );
    assert_eq!(
        winner(&s, &job("acme", "meta-llama/Llama-3", &meta)),
        "default"
    );
    let partial = [("domain", "medical")];
    assert_eq!(
        winner(&s, &job("acme", "Qwen/Qwen2.5-7B", &partial)),
        "default"
    );
    let wrong = [("domain", "medical"), ("tier", "2")];
    assert_eq!(
        winner(&s, &job("acme", "Qwen/Qwen2.5-7B", &wrong)),
        "default"
    );
}

#[test]
fn priority_then_specificity_then_name() {
    let s = set(&[
        ("default.toml", ""),
        ("b-tenant.toml", "[match]\ntenants = [\"acme\"]\n"),
        ("a-tenant.toml", "[match]\ntenants = [\"acme\"]\n"),
        (
            "specific.toml",
            "[match]\ntenants = [\"acme\"]\nmodels = [\"qwen*\"]\n",
        ),
        (
            "urgent.toml",
            "priority = 5\n[match]\nmodels = [\"qwen-urgent\"]\n",
        ),
    ]);
    // Same priority and specificity: alphabetical.
    assert_eq!(winner(&s, &job("acme", "llama", &[])), "a-tenant");
    // More specific beats less specific.
    assert_eq!(winner(&s, &job("acme", "qwen-7b", &[])), "specific");
    // Priority beats specificity.
    assert_eq!(winner(&s, &job("acme", "qwen-urgent", &[])), "urgent");
    let c = |n: &str, priority, specificity| Candidate {
        name: n.into(),
        priority,
        specificity,
    };
    assert_eq!(
        s.candidates(&job("acme", "qwen-urgent", &[])),
        [
            c("urgent", 5, 1),
            c("specific", 0, 2),
            c("a-tenant", 0, 1),
            c("b-tenant", 0, 1),
            c("default", 0, 0)
        ]
    );
    assert_eq!(
        s.candidates(&job("zed", "llama", &[])),
        [c("default", 0, 0)]
    );
    // Negative priority loses to the default-priority 0 ones but beats the fallback.
    let s = set(&[
        ("default.toml", ""),
        ("low.toml", "priority = -1\n"),
        ("t.toml", "[match]\ntenants = [\"x\"]\n"),
    ]);
    assert_eq!(winner(&s, &job("x", "m", &[])), "t");
    assert_eq!(winner(&s, &job("y", "m", &[])), "low");
}

#[test]
fn specificity_counts_conditions() {
    let rule = MatchRule {
        tenants: vec!["a".into()],
        models: vec!["x*".into(), "y*".into()],
        metadata: [
            ("k".to_string(), "v".to_string()),
            ("l".to_string(), "w".to_string()),
        ]
        .into_iter()
        .collect(),
    };
    assert_eq!(specificity(&rule), 4);
    assert_eq!(specificity(&MatchRule::default()), 0);
}

#[test]
fn glob_star_crosses_slashes() {
    let s = set(&[("qwen.toml", "[match]\nmodels = [\"*qwen*\"]\n")]);
    assert_eq!(winner(&s, &job("t", "org/sub/qwen-7b", &[])), "qwen");
}

#[test]
fn no_match_without_default_is_an_error() {
    let s = set(&[("acme.toml", "[match]\ntenants = [\"acme\"]\n")]);
    assert_eq!(
        s.resolve(&job("other", "gpt-4o-mini", &[]))
            .unwrap_err()
            .to_string(),
        r#"no policy matches tenant "other", model "gpt-4o-mini" and there is no `default` policy"#
    );
}
