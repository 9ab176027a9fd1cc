//! `fake-upstream`: the fake OpenAI provider (`gateway::upstream::fake`) as a process, for the
//! pytest suite. Serves on 127.0.0.1:0 as a provider (jobs advance as they are retrieved),
//! prints one line `fake-upstream listening on http://127.0.0.1:PORT/v1`, and runs until
//! killed. Built only with the `test-upstream` feature.

use gateway::upstream::fake::{spawn_with, Knobs};
use std::io::Write;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let fake = spawn_with(Knobs::provider()).await;
    let mut out = std::io::stdout().lock();
    writeln!(out, "fake-upstream listening on {}", fake.base_url).expect("stdout");
    out.flush().expect("stdout");
    drop(out);
    std::future::pending::<()>().await;
}
