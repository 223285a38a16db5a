//! Lines of a request file, numbered from 1, each at most [`MAX_LINE_BYTES`] long so that no
//! file makes the reader allocate without bound.

use std::io::{BufRead, Read};

/// Longest line a request file may have (a Mooncake row with a 128k-token prompt's `hash_ids`
/// is a few kilobytes).
pub const MAX_LINE_BYTES: u64 = 1 << 20;

/// The non-blank lines of `reader` with their 1-based numbers.
pub struct Lines<R> {
    reader: R,
    number: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> Lines<R> {
    pub fn new(reader: R) -> Self {
        Lines {
            reader,
            number: 0,
            buf: Vec::new(),
        }
    }
}

impl<R: BufRead> Iterator for Lines<R> {
    /// A line's number and text (without its line ending), or a message naming the line.
    type Item = Result<(usize, String), String>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.number += 1;
            self.buf.clear();
            let read = (&mut self.reader)
                .take(MAX_LINE_BYTES + 1)
                .read_until(b'\n', &mut self.buf);
            let line = self.number;
            match read {
                Ok(0) => return None,
                Ok(_) if self.buf.len() as u64 > MAX_LINE_BYTES => {
                    return Some(Err(format!(
                        "line {line}: longer than {MAX_LINE_BYTES} bytes"
                    )));
                }
                Ok(_) => {}
                Err(e) => return Some(Err(format!("line {line}: {e}"))),
            }
            let Ok(text) = std::str::from_utf8(&self.buf) else {
                return Some(Err(format!("line {line}: not UTF-8 text")));
            };
            let text = text.trim_end_matches(['\n', '\r']);
            let text = if line == 1 {
                text.trim_start_matches('\u{feff}')
            } else {
                text
            };
            if !text.trim().is_empty() {
                return Some(Ok((line, text.to_string())));
            }
        }
    }
}
