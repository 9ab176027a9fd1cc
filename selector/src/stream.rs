//! Streaming mix for client files too large to hold in memory: lines are read and written as
//! raw bytes, in one pass, with [`crate::interleave`] doing the placement.
//!
//! Lines are split on `\n`; a trailing `\r` is dropped (output lines end in `\n`); lines that
//! are empty or only ASCII whitespace are skipped and take no position — the same rule as
//! [`crate::jsonl_lines`], so counts from [`count_examples`] match the plan.

use crate::interleave::interleave;
use crate::mix::{MixError, MixPlan};
use std::io::{BufRead, Write};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StreamError {
    #[error("reading the client dataset: {0}")]
    Read(std::io::Error),
    #[error("writing the mixed dataset: {0}")]
    Write(std::io::Error),
    #[error(transparent)]
    Mix(#[from] MixError),
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// The non-blank lines of `reader`, as bytes without their terminator.
fn lines<R: BufRead>(mut reader: R) -> impl Iterator<Item = Result<Vec<u8>, std::io::Error>> {
    std::iter::from_fn(move || loop {
        let mut buf = Vec::new();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => return None,
            Ok(_) => {
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                }
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                }
                if !is_blank(&buf) {
                    return Some(Ok(buf));
                }
            }
            Err(e) => return Some(Err(e)),
        }
    })
}

/// Number of examples (non-blank lines) in a JSONL stream.
pub fn count_examples<R: BufRead>(reader: R) -> Result<usize, StreamError> {
    let mut n = 0;
    for l in lines(reader) {
        l.map_err(StreamError::Read)?;
        n += 1;
    }
    Ok(n)
}

/// Writes the client lines with `safety` lines (one per plan entry, in plan order) at their
/// planned positions. Returns the number of lines written.
pub fn write_mixed<R: BufRead, W: Write, S: AsRef<[u8]>>(
    plan: &MixPlan,
    client: R,
    safety: Vec<S>,
    mut out: W,
) -> Result<usize, StreamError> {
    // Read errors travel through the iterator as items; the first one stops the mix.
    let mut read_error = None;
    let client_items = lines(client).map_while(|l| match l {
        Ok(l) => Some(Item::Client(l)),
        Err(e) => {
            read_error = Some(e);
            None
        }
    });
    let safety: Vec<Item<S>> = safety.into_iter().map(Item::Safety).collect();
    let mut written = 0;
    let mut result = Ok(());
    for item in interleave(plan, client_items, safety)? {
        let item = match item {
            Ok(i) => i,
            Err(e) => {
                result = Err(StreamError::Mix(e));
                break;
            }
        };
        let bytes: &[u8] = match &item {
            Item::Client(l) => l,
            Item::Safety(s) => s.as_ref(),
        };
        out.write_all(bytes)
            .and_then(|_| out.write_all(b"\n"))
            .map_err(StreamError::Write)?;
        written += 1;
    }
    if let Some(e) = read_error {
        return Err(StreamError::Read(e));
    }
    result?;
    out.flush().map_err(StreamError::Write)?;
    Ok(written)
}

enum Item<S> {
    Client(Vec<u8>),
    Safety(S),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mix::Placement;
    use crate::select::Pick;

    fn plan(n: usize, picks: &[usize]) -> MixPlan {
        let p: Vec<Pick> = picks
            .iter()
            .map(|&i| Pick {
                pool_index: i,
                score: None,
            })
            .collect();
        MixPlan::new(&p, n, Placement::Even, 0)
    }

    #[test]
    fn streams_bytes_unchanged_and_skips_blank_lines() {
        let client = b"{\"a\":0}\r\n\n  \n{\"a\":1}\n{\"a\":\"\xc3\xa9\"}\n{\"a\":3}";
        assert_eq!(count_examples(&client[..]).unwrap(), 4);
        let mut out = Vec::new();
        let n = write_mixed(&plan(4, &[5]), &client[..], vec!["{\"pool\":5}"], &mut out).unwrap();
        assert_eq!(n, 5);
        // n = 4, m = 1: c = ⌊4/2⌋ = 2 → position 2.
        assert_eq!(
            out,
            b"{\"a\":0}\n{\"a\":1}\n{\"pool\":5}\n{\"a\":\"\xc3\xa9\"}\n{\"a\":3}\n".to_vec()
        );
    }

    #[test]
    fn count_mismatch_is_an_error() {
        let mut out = Vec::new();
        let err = write_mixed(&plan(3, &[0]), &b"x\ny\n"[..], vec!["s"], &mut out).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the client dataset was planned with 3 examples but has 2"
        );
    }

    struct FailingWriter;
    impl Write for FailingWriter {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn io_errors_are_reported() {
        let err = write_mixed(
            &plan(1, &[]),
            &b"x\n"[..],
            Vec::<&str>::new(),
            FailingWriter,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "writing the mixed dataset: disk full");
    }
}
