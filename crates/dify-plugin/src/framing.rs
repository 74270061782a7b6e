/*!
Newline framing with a hard cap, so one hostile or broken line cannot grow memory without bound
(daemon-protocol.md §1.2: the daemon writes one JSON object per `\n`-terminated line, and blank
lines are delimiters to skip).
*/

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The daemon puts an HTTP body of up to 10 MiB into one line as hex, so a request line can pass
/// 20 MiB; 64 MiB keeps every legitimate line and bounds the rest (daemon-protocol.md §1.2).
pub const MAX_INBOUND_LINE: usize = 64 * 1024 * 1024;

/// What [`read_frame`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// One line without its `\n` (and without a trailing `\r`).
    Line(Vec<u8>),
    /// A line longer than the cap was read and thrown away; this is its length.
    Oversized(usize),
    Eof,
}

/// Reads the next non-empty line of at most `max` bytes. An unterminated last line before EOF counts
/// as a line. Errors are the reader's own IO errors.
pub async fn read_frame<R: AsyncBufRead + Unpin>(reader: &mut R, max: usize) -> std::io::Result<Frame> {
    loop {
        let mut line = Vec::new();
        let mut discarded = 0usize;
        let mut terminated = false;
        loop {
            let available = reader.fill_buf().await?;
            if available.is_empty() {
                break;
            }
            let (chunk, found) = match memchr::memchr(b'\n', available) {
                Some(at) => (&available[..at], true),
                None => (available, false),
            };
            if discarded == 0 && line.len() + chunk.len() <= max {
                line.extend_from_slice(chunk);
            } else {
                discarded += line.len() + chunk.len();
                line = Vec::new();
            }
            let consumed = chunk.len() + usize::from(found);
            reader.consume(consumed);
            if found {
                terminated = true;
                break;
            }
        }
        if discarded > 0 {
            return Ok(Frame::Oversized(discarded));
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if !line.is_empty() {
            return Ok(Frame::Line(line));
        }
        if !terminated {
            return Ok(Frame::Eof);
        }
        // A blank line: the SDK writes them as delimiters; skip it.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8], max: usize) -> Vec<Frame> {
        let mut reader = tokio::io::BufReader::with_capacity(7, input);
        let mut out = Vec::new();
        loop {
            let frame = read_frame(&mut reader, max).await.unwrap();
            let eof = frame == Frame::Eof;
            out.push(frame);
            if eof {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn splits_lines_across_buffer_boundaries_and_skips_blank_ones() {
        let got = frames(b"first line\n\n\r\nsecond\r\nlast-unterminated", 100).await;
        assert_eq!(
            got,
            vec![
                Frame::Line(b"first line".to_vec()),
                Frame::Line(b"second".to_vec()),
                Frame::Line(b"last-unterminated".to_vec()),
                Frame::Eof
            ]
        );
    }

    #[tokio::test]
    async fn oversized_line_is_dropped_and_reading_resumes() {
        let got = frames(b"0123456789abcdef\nok\n", 10).await;
        assert_eq!(got, vec![Frame::Oversized(16), Frame::Line(b"ok".to_vec()), Frame::Eof]);
    }

    #[tokio::test]
    async fn many_lines_straddling_reads() {
        // The SDK's own stdio test: 200 lines of ~4 KB delivered in 64 KiB reads.
        let line =
            format!("{{\"session_id\":\"1\",\"data\":{{\"test\":\"{}\"}},\"event\":\"request\"}}\n", "t".repeat(4000));
        let input = line.repeat(200);
        let mut reader = tokio::io::BufReader::with_capacity(65536, input.as_bytes());
        let mut count = 0;
        while let Frame::Line(l) = read_frame(&mut reader, MAX_INBOUND_LINE).await.unwrap() {
            assert_eq!(l.len() + 1, line.len());
            count += 1;
        }
        assert_eq!(count, 200);
    }
}
