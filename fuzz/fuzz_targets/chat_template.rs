#![no_main]
#[path = "../checks/chat_template.rs"]
mod target;

libfuzzer_sys::fuzz_target!(|data: &[u8]| target::check(data));
