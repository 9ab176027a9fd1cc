use super::report::percentile;
use super::*;

const GOOD: &str = r#"{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!","weight":1}]}"#;

/// `bad` at line `at` (1-based) among good lines; `n` lines in all.
fn file_with(bad: &str, at: usize, n: usize) -> String {
    (1..=n)
        .map(|i| if i == at { bad } else { GOOD })
        .collect::<Vec<_>>()
        .join("\n")
}

fn run(text: &str) -> Result<ScreenReport, ScreenFailure> {
    screen(text.as_bytes(), &ScreenOptions::default())
}

fn rejects(bad: &str, reason: FailReason, needle: &str) {
    let f = run(&file_with(bad, 3, 12)).expect_err(bad);
    assert_eq!(f.reason, reason, "{bad}: {}", f.message);
    assert_eq!(f.code, "invalid_training_file");
    assert_eq!(f.line, Some(3));
    assert!(
        f.message.starts_with("Invalid file format. Example 3 "),
        "{}",
        f.message
    );
    assert!(
        f.message.contains(needle),
        "{:?} lacks {needle:?}",
        f.message
    );
    assert!(f.message.contains("(line 3)"), "{}", f.message);
}

#[test]
fn good_file_reports_statistics() {
    let r = run(&file_with(GOOD, 1, 12)).unwrap();
    assert_eq!(r.examples, 12);
    assert_eq!(r.token_source, TokenSource::Estimate);
    // 9+2+6 bytes -> 5 tokens + 3 messages * 4.
    assert_eq!(r.tokens_p50, 17);
    assert_eq!(r.tokens_total, 12 * 17);
    assert_eq!(r.too_long, 0);
}

#[test]
fn not_json_or_not_object() {
    rejects(
        "{\"messages\": [",
        FailReason::NotJsonObject,
        "is not a valid JSON object",
    );
    rejects(
        "[1,2]",
        FailReason::NotJsonObject,
        "is not a JSON object (found an array)",
    );
    rejects("\"text\"", FailReason::NotJsonObject, "found a string");
}

#[test]
fn messages_missing_empty_or_not_a_list() {
    rejects(
        r#"{"prompt":"a","completion":"b"}"#,
        FailReason::MessagesMissing,
        "is missing `messages`",
    );
    rejects(
        r#"{"messages":[]}"#,
        FailReason::MessagesMissing,
        "empty `messages`",
    );
    rejects(
        r#"{"messages":{"role":"user"}}"#,
        FailReason::MessagesMissing,
        "must be a list",
    );
}

#[test]
fn message_without_role_or_content() {
    rejects(
        r#"{"messages":[{"content":"x"},{"role":"assistant","content":"y"}]}"#,
        FailReason::MessageMissingKey,
        "message 1 is missing `role`",
    );
    rejects(
        r#"{"messages":[{"role":"user","content":"x"},{"role":"assistant"}]}"#,
        FailReason::MessageMissingKey,
        "message 2 is missing `content`",
    );
    rejects(
        r#"{"messages":[3]}"#,
        FailReason::MessageMissingKey,
        "message 1 is not an object",
    );
}

#[test]
fn unrecognised_key_and_role() {
    rejects(
        r#"{"messages":[{"role":"user","content":"x","mood":"sad"},{"role":"assistant","content":"y"}]}"#,
        FailReason::UnrecognizedKey,
        "message 1 has an unrecognized key: `mood`",
    );
    rejects(
        r#"{"messages":[{"role":"robot","content":"x"},{"role":"assistant","content":"y"}]}"#,
        FailReason::UnrecognizedRole,
        "unrecognized role: `robot`",
    );
}

#[test]
fn empty_content() {
    rejects(
        r#"{"messages":[{"role":"user","content":"  "},{"role":"assistant","content":"y"}]}"#,
        FailReason::EmptyContent,
        "message 1 has empty content",
    );
    rejects(
        r#"{"messages":[{"role":"user","content":null},{"role":"assistant","content":"y"}]}"#,
        FailReason::EmptyContent,
        "message 1 has no content",
    );
}

#[test]
fn function_call_allows_null_content() {
    let ok = r#"{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":null,"function_call":{"name":"f","arguments":"{}"}}]}"#;
    assert!(run(&file_with(ok, 2, 10)).is_ok());
}

#[test]
fn no_assistant_message() {
    rejects(
        r#"{"messages":[{"role":"user","content":"x"}]}"#,
        FailReason::NoAssistantMessage,
        "has no assistant message",
    );
}

#[test]
fn weight_must_be_zero_or_one() {
    rejects(
        r#"{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y","weight":0.5}]}"#,
        FailReason::InvalidWeight,
        "weight 0.5; weight must be 0 or 1",
    );
    let zero = r#"{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y","weight":0}]}"#;
    assert!(run(&file_with(zero, 2, 10)).is_ok());
}

#[test]
fn chat_template_tokens_in_content() {
    rejects(
        r#"{"messages":[{"role":"user","content":"hi <|im_start|>system"},{"role":"assistant","content":"y"}]}"#,
        FailReason::InvalidToken,
        "message contains an invalid token: <|im_start|>",
    );
    // Escaped JSON still decodes to the token.
    rejects(
        r#"{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"a\n<|endoftext|>"}]}"#,
        FailReason::InvalidToken,
        "<|endoftext|>",
    );
    rejects(
        r#"{"messages":[{"role":"user","content":[{"type":"text","text":"<|im_end|>"}]},{"role":"assistant","content":"y"}]}"#,
        FailReason::InvalidToken,
        "<|im_end|>",
    );
}

#[test]
fn too_few_examples() {
    let f = run(&file_with(GOOD, 1, 9)).unwrap_err();
    assert_eq!(f.code, "invalid_n_examples");
    assert_eq!(f.reason, FailReason::TooFewExamples);
    assert_eq!(
        f.message,
        "Training file has 9 example(s), but must have at least 10 examples"
    );
}

#[test]
fn blank_lines_crlf_and_bom_are_tolerated_and_lines_counted() {
    let mut text = String::from("\u{feff}");
    for _ in 0..10 {
        text.push_str(GOOD);
        text.push_str("\r\n\n");
    }
    text.push_str("{\"messages\":[]}\n");
    let f = run(&text).unwrap_err();
    assert_eq!(f.line, Some(21));
    assert!(f.message.contains("Example 11 "), "{}", f.message);
}

#[test]
fn overlong_line_is_refused_without_buffering_it() {
    let opts = ScreenOptions {
        max_line_bytes: 200,
        ..ScreenOptions::default()
    };
    let text = format!("{GOOD}\n{}\n", "x".repeat(10_000));
    let f = screen(text.as_bytes(), &opts).unwrap_err();
    assert_eq!(f.reason, FailReason::LineTooLong);
    assert_eq!(f.line, Some(2));
}

#[test]
fn estimate_counts_too_long_examples() {
    let long = format!(
        r#"{{"messages":[{{"role":"user","content":"{}"}},{{"role":"assistant","content":"y"}}]}}"#,
        "a".repeat(400)
    );
    let opts = ScreenOptions {
        max_length: 50,
        ..ScreenOptions::default()
    };
    let r = screen(file_with(&long, 4, 10).as_bytes(), &opts).unwrap();
    assert_eq!(r.too_long, 1);
    assert_eq!(r.tokens_max, 101 + 8);
}

#[test]
fn percentiles_are_nearest_rank() {
    let v: Vec<u32> = (1..=100).collect();
    assert_eq!(percentile(&v, 5), 5);
    assert_eq!(percentile(&v, 50), 50);
    assert_eq!(percentile(&v, 95), 95);
    assert_eq!(percentile(&[7], 5), 7);
    assert_eq!(percentile(&[], 50), 0);
}

#[test]
fn quick_check_accepts_jsonl_and_refuses_other_formats() {
    assert!(quick_check(GOOD.as_bytes()).is_ok());
    assert!(quick_check(b"\xef\xbb\xbf\n{\"messages\": [").is_ok());
    assert!(quick_check(format!("{GOOD}\n{{").as_bytes()).is_ok());
    assert!(quick_check(b"").unwrap_err().contains("empty"));
    assert!(quick_check(b"prompt,completion\n")
        .unwrap_err()
        .contains("Line 1 is not a JSON object"));
    assert!(quick_check(b"\n\n[1,2]").unwrap_err().contains("Line 3"));
    assert!(quick_check(b"{\"a\":1,}\n{}")
        .unwrap_err()
        .contains("not valid JSON"));
    assert!(quick_check(b"\x89PNG\r\n").is_err());
}

#[test]
fn non_string_role_and_non_numeric_weight() {
    rejects(
        r#"{"messages":[{"role":1,"content":"x"},{"role":"assistant","content":"y"}]}"#,
        FailReason::UnrecognizedRole,
        "message 1 has a `role` that is not a string (found a number)",
    );
    rejects(
        r#"{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y","weight":"1"}]}"#,
        FailReason::InvalidWeight,
        "weight that is not a number (found a string)",
    );
}

#[test]
fn tool_calls_and_content_parts_are_accepted() {
    let ok = r#"{"messages":[{"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"x"}}]},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"42"},{"role":"assistant","content":"done"}],"tools":[{"type":"function"}]}"#;
    let r = run(&file_with(ok, 5, 10)).unwrap();
    assert_eq!(r.examples, 10);
    rejects(
        r#"{"messages":[{"role":"user","content":[]},{"role":"assistant","content":"y"}]}"#,
        FailReason::EmptyContent,
        "message 1 has no content",
    );
    rejects(
        r#"{"messages":[{"role":"user","content":7},{"role":"assistant","content":"y"}]}"#,
        FailReason::EmptyContent,
        "content that is a number",
    );
}

#[test]
fn read_errors_are_reported_with_the_line() {
    struct Broken(usize);
    impl std::io::Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("disk gone"));
            }
            self.0 -= 1;
            let line = format!("{GOOD}\n");
            buf[..line.len()].copy_from_slice(line.as_bytes());
            Ok(line.len())
        }
    }
    let f = screen(
        std::io::BufReader::new(Broken(2)),
        &ScreenOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        (f.code, f.reason, f.line),
        ("file_read_error", FailReason::Io, Some(3))
    );
    assert!(f.message.contains("disk gone"));
}

#[test]
fn escapes_cannot_hide_tokens_or_blankness() {
    // `\u003c` is `<`: the token only exists after decoding.
    rejects(
        r#"{"messages":[{"role":"user","content":"x \u003c|im_start|>system"},{"role":"assistant","content":"y"}]}"#,
        FailReason::InvalidToken,
        "<|im_start|>",
    );
    rejects(
        r#"{"messages":[{"role":"user","content":"x\n<|im_end|>\"q\""},{"role":"assistant","content":"y"}]}"#,
        FailReason::InvalidToken,
        "<|im_end|>",
    );
    for blank in [r#"\n\t \r"#, r#"\u0020\u00a0"#, "\u{a0}\u{3000}"] {
        rejects(
            &format!(
                r#"{{"messages":[{{"role":"user","content":"{blank}"}},{{"role":"assistant","content":"y"}}]}}"#
            ),
            FailReason::EmptyContent,
            "message 1 has empty content",
        );
    }
    // Escapes next to ordinary text are fine.
    let ok = r#"{"messages":[{"role":"user","content":"\n\tnut \u00e9 <b>bold</b> \/ <|not a token"},{"role":"assistant","content":"y"}]}"#;
    assert!(run(&file_with(ok, 2, 10)).is_ok());
}

#[test]
fn invalid_utf8_is_rejected_with_its_column() {
    let mut text = file_with(GOOD, 1, 12).into_bytes();
    // Line 3 starts after two lines of GOOD plus their newlines; corrupt its 5th byte.
    let at = 2 * (GOOD.len() + 1) + 4;
    text[at] = 0xff;
    let f = screen(&text[..], &ScreenOptions::default()).unwrap_err();
    assert_eq!((f.reason, f.line), (FailReason::NotJsonObject, Some(3)));
    assert!(
        f.message
            .contains("is not valid UTF-8 (invalid byte at column 5)"),
        "{}",
        f.message
    );
}
