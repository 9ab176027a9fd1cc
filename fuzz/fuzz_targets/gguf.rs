#![no_main]
#[path = "../checks/gguf.rs"]
mod target;

libfuzzer_sys::fuzz_target!(|data: &[u8]| target::check(data));
