#![cfg(feature = "engine")]
use selector::{ChatMessage, EngineGenerator, ReplyGenerator};
use trainer::{CpuBackend, Engine, GenerateOptions, Sampling};
#[test]
fn dbg() {
    let f = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../trainer/tests/fixtures/tiny_tied");
    let engine = Engine::<CpuBackend>::load(&f, Default::default()).unwrap();
    let opts = GenerateOptions { max_new_tokens: 24, sampling: Sampling::TopP { temperature: 10.0, top_p: 1.0, seed: 3 }, stop_tokens: vec![] };
    let p = vec![ChatMessage{role:"user".into(), content:"Say hello.".into()}];
    let g = engine.generate(&[engine.tokenizer.encode_prompt(&[trainer::Message{role:"user".into(), content:"Say hello.".into()}]).unwrap()], None, &opts).unwrap();
    eprintln!("raw {:?}", g);
    let mut gen = EngineGenerator::new(&engine, opts);
    eprintln!("{:?}", gen.generate_batch(&[&p[..], &p[..]]).unwrap());
    let q: Vec<Vec<ChatMessage>> = ["What is two plus two?", "Name a colour.", "Say hello."].iter().map(|c| vec![ChatMessage{role:"user".into(), content:c.to_string()}]).collect();
    let refs: Vec<&[ChatMessage]> = q.iter().map(|v| &v[..]).collect();
    eprintln!("pool {:?}", gen.generate_batch(&refs).unwrap());
}
