#![no_main]
#[path = "../checks/screen_jsonl.rs"]
mod target;

libfuzzer_sys::fuzz_target!(|data: &[u8]| target::check(data));
