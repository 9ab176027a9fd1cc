//! Chat-template ids and answer masks equal transformers' apply_chat_template.

mod common;

use common::{fixtures, goldens};
use trainer::ChatTokenizer;

#[test]
fn template_ids_and_masks_match_transformers() {
    let g = goldens();
    let tok = ChatTokenizer::load(&fixtures().join("tiny_tied")).expect("tokenizer loads");
    for (i, case) in g.template.iter().enumerate() {
        let enc = tok.encode_chat(&case.messages, None).expect("encodes");
        assert_eq!(enc.ids, case.ids, "example {i} ids");
        let mask: Vec<u8> = enc.answer_mask.iter().map(|&m| u8::from(m)).collect();
        assert_eq!(mask, case.mask, "example {i} mask");
        assert!(!enc.truncated);
        let prompt = tok
            .encode_prompt(&case.messages[..case.messages.len() - 1])
            .expect("prompt");
        assert_eq!(prompt, case.prompt_ids, "example {i} generation prompt");
    }
}

#[test]
fn truncation_cuts_from_the_right_and_is_recorded() {
    let g = goldens();
    let tok = ChatTokenizer::load(&fixtures().join("tiny_tied")).expect("tokenizer loads");
    let enc = tok
        .encode_chat(&g.template[0].messages, Some(10))
        .expect("encodes");
    assert!(enc.truncated);
    assert_eq!(enc.ids, g.template[0].ids[..10]);
    assert_eq!(enc.answer_mask.len(), 10);
}

#[test]
fn chatml_fallback_matches_the_qwen_template_when_a_system_prompt_is_given() {
    let g = goldens();
    let tmp = tempfile::tempdir().expect("tempdir");
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixtures().join("tiny_tied").join(f), tmp.path().join(f)).expect("copy");
    }
    let tok = ChatTokenizer::load(tmp.path()).expect("loads without a template");
    let case = &g.template[1];
    assert_eq!(case.messages[0].role, "system");
    let enc = tok.encode_chat(&case.messages, None).expect("encodes");
    assert_eq!(enc.ids, case.ids);
}

#[test]
fn python_string_methods_and_raise_exception_work_in_templates() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        fixtures().join("tiny_tied").join("tokenizer.json"),
        tmp.path().join("tokenizer.json"),
    )
    .expect("copy");
    let template = "{% for m in messages %}{% if m.role == 'tool' %}{{ raise_exception('no tools') }}{% endif %}{{ m.content.strip().upper() }}|{% endfor %}";
    let cfg = serde_json::json!({ "chat_template": template, "eos_token": "<|im_end|>" });
    std::fs::write(tmp.path().join("tokenizer_config.json"), cfg.to_string()).expect("write");
    let tok = ChatTokenizer::load(tmp.path()).expect("loads");
    let msg = |role: &str, content: &str| trainer::Message {
        role: role.into(),
        content: content.into(),
    };
    assert_eq!(
        tok.render(&[msg("user", "  hi ")], false).expect("renders"),
        "HI|"
    );
    let err = tok
        .render(&[msg("tool", "x")], false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no tools"), "{err}");
}
