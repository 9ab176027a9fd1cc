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
