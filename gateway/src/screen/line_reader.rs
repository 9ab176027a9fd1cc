//! A bounded line reader over `BufRead`: reuses one buffer, strips `\n` / `\r\n` and a
//! leading UTF-8 BOM, and refuses lines longer than a limit instead of growing without bound.

use std::io::{self, BufRead};

pub(crate) enum NextLine<'b> {
    /// 1-based line number and the line without its terminator.
    Line(u64, &'b [u8]),
    /// The line with this number exceeds the limit.
    TooLong(u64),
    Eof,
}

pub(crate) struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    line_no: u64,
    max: usize,
}

impl<R: BufRead> LineReader<R> {
    pub(crate) fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            buf: Vec::with_capacity(64 * 1024),
            line_no: 0,
            max,
        }
    }

    /// Number of the last line returned (or being read when an error occurred).
    pub(crate) fn line_no(&self) -> u64 {
        self.line_no
    }

    pub(crate) fn next_line(&mut self) -> io::Result<NextLine<'_>> {
        self.buf.clear();
        let mut seen_any = false;
        loop {
            let chunk = match self.inner.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                break;
            }
            seen_any = true;
            let (take, done) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            if self.buf.len() + take > self.max + 2 {
                let consumed = chunk.len();
                self.inner.consume(consumed);
                self.line_no += 1;
                return Ok(NextLine::TooLong(self.line_no));
            }
            self.buf.extend_from_slice(&chunk[..take]);
            self.inner.consume(take);
            if done {
                break;
            }
        }
        if !seen_any && self.buf.is_empty() {
            return Ok(NextLine::Eof);
        }
        self.line_no += 1;
        let mut line: &[u8] = &self.buf;
        if let Some(l) = line.strip_suffix(b"\n") {
            line = l;
        }
        if let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        if self.line_no == 1 {
            if let Some(l) = line.strip_prefix(b"\xef\xbb\xbf".as_slice()) {
                line = l;
            }
        }
        if line.len() > self.max {
            return Ok(NextLine::TooLong(self.line_no));
        }
        Ok(NextLine::Line(self.line_no, line))
    }
}
