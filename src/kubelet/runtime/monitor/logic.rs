//! The container monitor's logic, free of system calls and allocation (`core` only), so the
//! same file is both part of the tiny `no_std` monitor program and unit-tested in the crate.
//!
//! - [`LineBuf`] turns a container's output into CRI log lines: full lines tagged `F`, a line
//!   longer than [`MAX_LINE`] split into `P` pieces, CR before LF dropped for a terminal.
//! - [`FrameParser`] reads the attach protocol from a client (`[kind: u8][len: u32 BE]
//!   [payload]`: 0 = stdin data, streamed as it arrives; 1 = resize, cols and rows u16 BE;
//!   2 = close stdin).
//! - [`Buf`], [`rfc3339_nano`], [`oom_kills`]: fixed-size formatting and parsing.

/// The longest log line written in one piece.
pub const MAX_LINE: usize = 16 * 1024;
/// The largest attach frame a client may announce.
pub const MAX_FRAME: u32 = 1 << 20;

/// A fixed-capacity byte buffer for formatting; writes past the end are dropped.
pub struct Buf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Default for Buf<N> {
    fn default() -> Self {
        Buf { bytes: [0; N], len: 0 }
    }
}

impl<const N: usize> Buf<N> {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    pub fn push(&mut self, data: &[u8]) -> &mut Self {
        let n = data.len().min(N - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&data[..n]);
        self.len += n;
        self
    }

    pub fn push_u64(&mut self, mut v: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..])
    }

    pub fn push_i64(&mut self, v: i64) -> &mut Self {
        if v < 0 {
            self.push(b"-");
        }
        self.push_u64(v.unsigned_abs())
    }

    /// `v` with at least `width` digits, zero-padded.
    pub fn push_padded(&mut self, v: u64, width: usize) -> &mut Self {
        let mut tmp: Buf<20> = Buf::default();
        tmp.push_u64(v);
        for _ in tmp.len..width {
            self.push(b"0");
        }
        self.push(tmp.as_bytes())
    }

    /// NUL-terminated, for system calls taking a path.
    pub fn c_str(&mut self) -> *const u8 {
        if self.len == N {
            self.len -= 1;
        }
        self.bytes[self.len] = 0;
        self.bytes.as_ptr()
    }
}

/// `2006-01-02T15:04:05.999999999Z` for a UNIX time in nanoseconds (civil from days).
pub fn rfc3339_nano(ns: i64) -> Buf<32> {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000) as u64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let mo = (if mp < 10 { mp + 3 } else { mp - 9 }) as u64;
    let y = (yoe + era * 400 + i64::from(mo <= 2)).max(0) as u64;
    let mut b = Buf::default();
    b.push_padded(y, 4).push(b"-").push_padded(mo, 2).push(b"-").push_padded(d, 2);
    b.push(b"T").push_padded(sod / 3600, 2).push(b":").push_padded(sod % 3600 / 60, 2);
    b.push(b":").push_padded(sod % 60, 2).push(b".").push_padded(nanos, 9).push(b"Z");
    b
}

/// The OOM-kill counter in a cgroup v1 `memory.oom_control` or v2 `memory.events`.
pub fn oom_kills(text: &[u8]) -> u64 {
    for line in text.split(|b| *b == b'\n') {
        if let Some(v) = line.strip_prefix(b"oom_kill ") {
            let mut n = 0u64;
            for c in v.iter().take_while(|c| c.is_ascii_digit()) {
                n = n.saturating_mul(10).saturating_add(u64::from(c - b'0'));
            }
            return n;
        }
    }
    0
}

/// A container stream's bytes not yet written as a log line.
pub struct LineBuf {
    buf: [u8; MAX_LINE],
    len: usize,
    /// A terminal ends lines with CRLF; the log keeps the text only.
    pub strip_cr: bool,
}

impl LineBuf {
    pub const fn new(strip_cr: bool) -> LineBuf {
        LineBuf { buf: [0; MAX_LINE], len: 0, strip_cr }
    }

    /// Where the next read goes (never empty: a full buffer is written out at once).
    pub fn space(&mut self) -> &mut [u8] {
        &mut self.buf[self.len..]
    }

    /// The `n` bytes just read into [`space`](Self::space), as they arrived.
    pub fn fresh(&self, n: usize) -> &[u8] {
        &self.buf[self.len..self.len + n]
    }

    /// Takes `n` bytes read into `space()`; `emit(tag, text)` receives each finished line.
    pub fn commit(&mut self, n: usize, emit: &mut dyn FnMut(u8, &[u8])) {
        let end = self.len + n.min(MAX_LINE - self.len);
        let mut start = 0;
        let mut i = self.len;
        while i < end {
            if self.buf[i] == b'\n' {
                let mut line = &self.buf[start..i];
                if self.strip_cr {
                    line = line.strip_suffix(b"\r").unwrap_or(line);
                }
                emit(b'F', line);
                start = i + 1;
            }
            i += 1;
        }
        self.buf.copy_within(start..end, 0);
        self.len = end - start;
        if self.len == MAX_LINE {
            emit(b'P', &self.buf[..]);
            self.len = 0;
        }
    }

    /// Writes out an unfinished last line (the stream ended).
    pub fn flush(&mut self, emit: &mut dyn FnMut(u8, &[u8])) {
        if self.len > 0 {
            emit(b'F', &self.buf[..self.len]);
            self.len = 0;
        }
    }
}

/// What a client's frames ask for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Stdin(&'a [u8]),
    Resize { cols: u16, rows: u16 },
    CloseStdin,
}

/// Reads a client's frames as their bytes arrive; stdin payloads are passed on in pieces.
#[derive(Default)]
pub struct FrameParser {
    header: [u8; 5],
    header_len: usize,
    kind: u8,
    remaining: u32,
    small: [u8; 4],
    small_len: usize,
}

impl FrameParser {
    /// Feeds bytes from the client; false when the client broke the protocol.
    pub fn feed(&mut self, mut data: &[u8], on: &mut dyn FnMut(Request<'_>)) -> bool {
        while !data.is_empty() {
            if self.header_len < 5 {
                let n = (5 - self.header_len).min(data.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&data[..n]);
                self.header_len += n;
                data = &data[n..];
                if self.header_len < 5 {
                    return true;
                }
                self.kind = self.header[0];
                self.remaining = u32::from_be_bytes([self.header[1], self.header[2], self.header[3], self.header[4]]);
                if self.remaining > MAX_FRAME {
                    return false;
                }
                self.small_len = 0;
                if self.remaining == 0 {
                    if self.kind == 0 {
                        on(Request::Stdin(&[]));
                    }
                    self.finish(on);
                }
                continue;
            }
            let n = (self.remaining as usize).min(data.len());
            let (chunk, rest) = data.split_at(n);
            data = rest;
            self.remaining -= n as u32;
            match self.kind {
                0 => on(Request::Stdin(chunk)),
                1 => {
                    for b in chunk {
                        if self.small_len < 4 {
                            self.small[self.small_len] = *b;
                        }
                        self.small_len += 1;
                    }
                }
                _ => {}
            }
            if self.remaining == 0 {
                self.finish(on);
            }
        }
        true
    }

    fn finish(&mut self, on: &mut dyn FnMut(Request<'_>)) {
        match self.kind {
            1 if self.small_len == 4 => on(Request::Resize {
                cols: u16::from_be_bytes([self.small[0], self.small[1]]),
                rows: u16::from_be_bytes([self.small[2], self.small[3]]),
            }),
            2 => on(Request::CloseStdin),
            _ => {}
        }
        self.header_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(buf: &mut LineBuf, chunks: &[&[u8]]) -> Vec<(char, Vec<u8>)> {
        let mut out = Vec::new();
        for c in chunks {
            let mut data: &[u8] = c;
            while !data.is_empty() {
                let space = buf.space();
                let n = space.len().min(data.len());
                space[..n].copy_from_slice(&data[..n]);
                data = &data[n..];
                buf.commit(n, &mut |tag, text| out.push((tag as char, text.to_vec())));
            }
        }
        buf.flush(&mut |tag, text| out.push((tag as char, text.to_vec())));
        out
    }

    #[test]
    fn lines_are_split_across_reads() {
        let mut b = LineBuf::new(false);
        let got = lines(&mut b, &[b"he", b"llo\nwor", b"ld\n\nlast"]);
        let want: Vec<(char, Vec<u8>)> =
            vec![('F', b"hello".to_vec()), ('F', b"world".to_vec()), ('F', b"".to_vec()), ('F', b"last".to_vec())];
        assert_eq!(got, want);
    }

    #[test]
    fn long_lines_become_partial_pieces() {
        let mut b = LineBuf::new(false);
        let mut long = vec![b'x'; MAX_LINE * 2 + 10];
        long.push(b'\n');
        let got = lines(&mut b, &[&long]);
        assert_eq!(got.len(), 3);
        assert_eq!((got[0].0, got[0].1.len()), ('P', MAX_LINE));
        assert_eq!((got[1].0, got[1].1.len()), ('P', MAX_LINE));
        assert_eq!((got[2].0, got[2].1.len()), ('F', 10));
    }

    #[test]
    fn terminal_lines_lose_their_carriage_return() {
        let mut b = LineBuf::new(true);
        assert_eq!(lines(&mut b, &[b"a\r\nb\r\n"]), vec![('F', b"a".to_vec()), ('F', b"b".to_vec())]);
        let mut b = LineBuf::new(false);
        assert_eq!(lines(&mut b, &[b"a\r\n"]), vec![('F', b"a\r".to_vec())]);
    }

    fn requests(p: &mut FrameParser, data: &[u8]) -> (bool, Vec<String>) {
        let mut out = Vec::new();
        let ok = p.feed(data, &mut |r| {
            out.push(match r {
                Request::Stdin(d) => format!("stdin {}", String::from_utf8_lossy(d)),
                Request::Resize { cols, rows } => format!("resize {cols}x{rows}"),
                Request::CloseStdin => "close".into(),
            })
        });
        (ok, out)
    }

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![kind];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn frames_are_read_byte_by_byte_or_all_at_once() {
        let mut all = frame(0, b"hello");
        all.extend(frame(1, &[0, 80, 0, 24]));
        all.extend(frame(0, b""));
        all.extend(frame(9, b"ignored"));
        all.extend(frame(2, b""));
        let (ok, got) = requests(&mut FrameParser::default(), &all);
        assert!(ok);
        assert_eq!(got, ["stdin hello", "resize 80x24", "stdin ", "close"]);

        let mut p = FrameParser::default();
        let mut got = Vec::new();
        for b in &all {
            let (ok, mut r) = requests(&mut p, std::slice::from_ref(b));
            assert!(ok);
            got.append(&mut r);
        }
        let joined: String = got.iter().filter_map(|r| r.strip_prefix("stdin ")).collect();
        assert_eq!(joined, "hello");
        assert!(got.contains(&"resize 80x24".to_string()) && got.last() == Some(&"close".to_string()));
    }

    #[test]
    fn oversized_frames_and_bad_resizes_are_refused() {
        let mut f = vec![0u8];
        f.extend_from_slice(&(MAX_FRAME + 1).to_be_bytes());
        assert!(!requests(&mut FrameParser::default(), &f).0);
        let (ok, got) = requests(&mut FrameParser::default(), &frame(1, &[0, 80, 0]));
        assert!(ok && got.is_empty());
    }

    #[test]
    fn formatting_and_parsing() {
        assert_eq!(rfc3339_nano(0).as_bytes(), b"1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339_nano(1_475_712_429_669_794_202).as_bytes(), b"2016-10-06T00:07:09.669794202Z");
        assert_eq!(rfc3339_nano(951_782_400_000_000_001).as_bytes(), b"2000-02-29T00:00:00.000000001Z");
        let mut b: Buf<8> = Buf::default();
        b.push_i64(-42).push(b"/").push_padded(7, 3).push(b"overflowing");
        assert_eq!(b.as_bytes(), b"-42/007o");
        let p = b.c_str();
        // SAFETY: c_str returns a pointer to a NUL-terminated buffer that b keeps alive.
        assert_eq!(unsafe { std::ffi::CStr::from_ptr(p.cast()) }.to_bytes(), b"-42/007");
        assert_eq!(oom_kills(b"oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"), 3);
        assert_eq!(oom_kills(b"low 0\nhigh 0\nmax 1\noom 1\noom_kill 1\n"), 1);
        assert_eq!(oom_kills(b"oom_kill_disable 0\n"), 0);
    }
}
