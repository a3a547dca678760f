//! SPDY/3 header-block compression: one zlib stream per direction and connection, primed
//! with the SPDY/3 dictionary, each header block ending on a sync flush.
//!
//! Reading needs the dictionary for real (clients refer back into it), so the inflater keeps
//! the dictionary in front of its output window and runs miniz_oxide's raw inflater over
//! the frames as they come. Writing primes miniz_oxide's compressor the same way and ends
//! every block with a sync flush, which is the shape Go's reader (kubectl's) expects.

use miniz_oxide::deflate::core::{compress, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush};
use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

/// The SPDY/3 header dictionary (draft 3, section 2.6.10.1): length-prefixed header names
/// and values, then a run of common status codes, dates and media types.
pub fn dictionary() -> &'static [u8] {
    static DICT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DICT.get_or_init(|| {
        const WORDS: &[&str] = &[
            "options",
            "head",
            "post",
            "put",
            "delete",
            "trace",
            "accept",
            "accept-charset",
            "accept-encoding",
            "accept-language",
            "accept-ranges",
            "age",
            "allow",
            "authorization",
            "cache-control",
            "connection",
            "content-base",
            "content-encoding",
            "content-language",
            "content-length",
            "content-location",
            "content-md5",
            "content-range",
            "content-type",
            "date",
            "etag",
            "expect",
            "expires",
            "from",
            "host",
            "if-match",
            "if-modified-since",
            "if-none-match",
            "if-range",
            "if-unmodified-since",
            "last-modified",
            "location",
            "max-forwards",
            "pragma",
            "proxy-authenticate",
            "proxy-authorization",
            "range",
            "referer",
            "retry-after",
            "server",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "user-agent",
            "vary",
            "via",
            "warning",
            "www-authenticate",
            "method",
            "get",
            "status",
            "200 OK",
            "version",
            "HTTP/1.1",
            "url",
            "public",
            "set-cookie",
            "keep-alive",
            "origin",
        ];
        const TAIL: &str = concat!(
            "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
            "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
            "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
            "503 Service Unavailable",
            "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
            "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,",
            "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
        );
        let mut d = Vec::with_capacity(1424);
        for w in WORDS {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        d.extend_from_slice(TAIL.as_bytes());
        d
    })
}

pub fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += x as u32;
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ZlibError {
    #[error("the header block does not start a zlib stream")]
    BadHeader,
    #[error("the header block names another compression dictionary")]
    WrongDictionary,
    #[error("the header block is not valid deflate data ({0})")]
    Inflate(String),
    #[error("the header block is too large")]
    TooLarge,
}

/// History kept for back-references: deflate reaches at most 32 KiB back.
const WINDOW: usize = 32 * 1024;
/// The most one header block may inflate to.
const MAX_BLOCK: usize = 1 << 20;

/// Inflates the header blocks of one direction of a connection.
pub struct HeaderInflater {
    state: Box<DecompressorOxide>,
    /// The dictionary, then everything inflated so far (trimmed to the last window).
    window: Vec<u8>,
    /// Bytes of the zlib header still to see (2, plus 4 for the dictionary id).
    header: Vec<u8>,
    header_done: bool,
}

impl Default for HeaderInflater {
    fn default() -> Self {
        HeaderInflater { state: Box::default(), window: dictionary().to_vec(), header: Vec::new(), header_done: false }
    }
}

impl HeaderInflater {
    /// Inflates one compressed header block (the rest of a SYN_STREAM, SYN_REPLY or HEADERS frame).
    pub fn inflate(&mut self, mut input: &[u8]) -> Result<Vec<u8>, ZlibError> {
        if !self.header_done {
            while self.header.len() < 2 && !input.is_empty() {
                self.header.push(input[0]);
                input = &input[1..];
            }
            if self.header.len() >= 2 {
                let (cmf, flg) = (self.header[0], self.header[1]);
                if cmf & 0x0f != 8 || ((cmf as u16) << 8 | flg as u16) % 31 != 0 {
                    return Err(ZlibError::BadHeader);
                }
                let want = if flg & 0x20 != 0 { 6 } else { 2 };
                while self.header.len() < want && !input.is_empty() {
                    self.header.push(input[0]);
                    input = &input[1..];
                }
                if self.header.len() == want {
                    if want == 6 {
                        let id = u32::from_be_bytes([self.header[2], self.header[3], self.header[4], self.header[5]]);
                        if id != adler32(dictionary()) {
                            return Err(ZlibError::WrongDictionary);
                        }
                    }
                    self.header_done = true;
                }
            }
            if !self.header_done {
                return Ok(Vec::new());
            }
        }
        let start = self.window.len();
        let mut pos = start;
        let flags = inflate_flags::TINFL_FLAG_HAS_MORE_INPUT | inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
        loop {
            if self.window.len() < pos + 16 * 1024 {
                self.window.resize(pos + 16 * 1024, 0);
            }
            let (status, read, written) = decompress(&mut self.state, input, &mut self.window, pos, flags);
            input = &input[read..];
            pos += written;
            if pos - start > MAX_BLOCK {
                return Err(ZlibError::TooLarge);
            }
            match status {
                TINFLStatus::HasMoreOutput => continue,
                TINFLStatus::NeedsMoreInput | TINFLStatus::Done if input.is_empty() => break,
                TINFLStatus::NeedsMoreInput => continue,
                TINFLStatus::Done => break,
                other => return Err(ZlibError::Inflate(format!("{other:?}"))),
            }
        }
        let out = self.window[start..pos].to_vec();
        self.window.truncate(pos);
        if self.window.len() > 4 * WINDOW {
            self.window.drain(..self.window.len() - WINDOW);
        }
        Ok(out)
    }
}

/// Compresses the header blocks a server sends: a deflate stream primed with the
/// dictionary, each block ending on a sync flush, as Go's writer produces them.
pub struct HeaderDeflater {
    state: Box<CompressorOxide>,
    started: bool,
}

impl Default for HeaderDeflater {
    fn default() -> Self {
        let mut state = Box::new(CompressorOxide::new(create_comp_flags_from_zip_params(9, 0, 0)));
        // Priming: run the dictionary through the compressor and drop what it wrote, so
        // what follows may refer back into the dictionary, as the reader's preset expects.
        let mut sink = vec![0u8; 4096];
        let _ = compress(&mut state, dictionary(), &mut sink, TDEFLFlush::Sync);
        HeaderDeflater { state, started: false }
    }
}

impl HeaderDeflater {
    pub fn deflate(&mut self, block: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(block.len() + 16);
        if !self.started {
            self.started = true;
            // CMF 0x78 (deflate, 32 KiB window); FLG: best compression, FDICT, check bits.
            out.extend_from_slice(&[0x78, 0xf9]);
            out.extend_from_slice(&adler32(dictionary()).to_be_bytes());
        }
        let mut input = block;
        let mut buf = vec![0u8; block.len() + 1024];
        loop {
            let (_, read, written) = compress(&mut self.state, input, &mut buf, TDEFLFlush::Sync);
            out.extend_from_slice(&buf[..written]);
            input = &input[read..];
            if input.is_empty() && written < buf.len() {
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_is_the_spdy3_one() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert_eq!(&d[..11], b"\0\0\0\x07options");
        assert!(d.ends_with(b",enq=0."));
        assert_eq!((0x78u16 << 8 | 0xf9) % 31, 0);
    }

    /// A compressor that really uses the dictionary, as Go's does, to check the inflater
    /// resolves references into it, across several sync-flushed blocks.
    fn go_like_stream(blocks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut c = CompressorOxide::new(create_comp_flags_from_zip_params(9, 0, 0));
        // Prime the compressor's history with the dictionary by compressing it and
        // throwing that output away, then emit only what follows: a raw deflate stream
        // whose matches may point into the dictionary.
        let mut sink = vec![0u8; 8192];
        let (_, _, _) = compress(&mut c, dictionary(), &mut sink, TDEFLFlush::Sync);
        let mut out = Vec::new();
        for (i, b) in blocks.iter().enumerate() {
            let mut buf = vec![0u8; 8192];
            let (_, _, n) = compress(&mut c, b, &mut buf, TDEFLFlush::Sync);
            let mut frame = Vec::new();
            if i == 0 {
                frame.extend_from_slice(&[0x78, 0xf9]);
                frame.extend_from_slice(&adler32(dictionary()).to_be_bytes());
            }
            frame.extend_from_slice(&buf[..n]);
            out.push(frame);
        }
        out
    }

    #[test]
    fn inflates_blocks_that_refer_into_the_dictionary_and_each_other() {
        let a: &[u8] = b"\0\0\0\x01\0\0\0\x0acontent-type\0\0\0\x0atext/plain";
        let b: &[u8] = b"\0\0\0\x01\0\0\0\x0astreamtype\0\0\0\x06stdout";
        let c: &[u8] = b"\0\0\0\x01\0\0\0\x0astreamtype\0\0\0\x06stderr";
        let frames = go_like_stream(&[a, b, c]);
        // Some output must be shorter than a stored copy, or nothing was referenced.
        assert!(frames[2].len() < c.len(), "{:?}", frames[2]);
        let mut inf = HeaderInflater::default();
        assert_eq!(inf.inflate(&frames[0]).unwrap(), a);
        assert_eq!(inf.inflate(&frames[1]).unwrap(), b);
        assert_eq!(inf.inflate(&frames[2]).unwrap(), c);
    }

    #[test]
    fn our_blocks_inflate_back_and_end_on_a_sync_flush() {
        let mut d = HeaderDeflater::default();
        let mut inf = HeaderInflater::default();
        let first = d.deflate(b"\0\0\0\0");
        assert_eq!(&first[..6], &[&[0x78u8, 0xf9][..], &adler32(dictionary()).to_be_bytes()].concat()[..]);
        assert!(first.ends_with(&[0, 0, 0xff, 0xff]), "{first:?}");
        assert_eq!(inf.inflate(&first).unwrap(), b"\0\0\0\0");
        let big: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        assert_eq!(inf.inflate(&d.deflate(&big)).unwrap(), big);
        assert_eq!(inf.inflate(&d.deflate(b"\0\0\0\0")).unwrap(), b"\0\0\0\0");
    }

    #[test]
    fn rejects_a_foreign_dictionary() {
        let mut inf = HeaderInflater::default();
        assert_eq!(inf.inflate(&[0x78, 0xf9, 0, 0, 0, 1, 0]).unwrap_err(), ZlibError::WrongDictionary);
        assert_eq!(HeaderInflater::default().inflate(&[0x12, 0x34]).unwrap_err(), ZlibError::BadHeader);
    }
}
