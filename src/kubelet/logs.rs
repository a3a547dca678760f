//! Container logs in the CRI format (`<RFC3339Nano> <stdout|stderr> <F|P> <text>`), as the
//! shim writes them under `/var/log/pods/<ns>_<pod>_<uid>/<container>/<restart>.log`, and the
//! reader behind `kubectl logs` (tail, since, timestamps, limit, follow).

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// `<root>/<ns>_<pod>_<uid>/<container>/<restart>.log`.
pub fn log_path(pods_log_root: &Path, ns: &str, pod: &str, uid: &str, container: &str, restart_count: u32) -> PathBuf {
    pods_log_root.join(format!("{ns}_{pod}_{uid}")).join(container).join(format!("{restart_count}.log"))
}

/// Which streams to return.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogStream {
    #[default]
    All,
    Stdout,
    Stderr,
}

/// `kubectl logs` options.
#[derive(Clone, Debug, Default)]
pub struct LogOptions {
    pub follow: bool,
    pub tail_lines: Option<usize>,
    /// RFC 3339; lines logged earlier are skipped.
    pub since_time: Option<String>,
    pub timestamps: bool,
    pub limit_bytes: Option<u64>,
    pub stream: LogStream,
}

/// One parsed log line, partial pieces already joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub timestamp: String,
    pub stream: String,
    pub text: Vec<u8>,
}

fn parse_ts(s: &str) -> Option<i128> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos())
}

/// Joins `P` pieces and yields complete lines; malformed lines are skipped.
#[derive(Default)]
struct Parser {
    partial: Option<LogLine>,
    pending: Vec<u8>,
}

impl Parser {
    fn push(&mut self, data: &[u8], out: &mut Vec<LogLine>) {
        self.pending.extend_from_slice(data);
        let mut start = 0;
        while let Some(pos) = self.pending[start..].iter().position(|b| *b == b'\n') {
            let line = self.pending[start..start + pos].to_vec();
            start += pos + 1;
            self.line(&line, out);
        }
        self.pending.drain(..start);
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<LogLine>) {
        let mut parts = line.splitn(4, |b| *b == b' ');
        let (Some(ts), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next()) else { return };
        let text = parts.next().unwrap_or_default();
        let ts = String::from_utf8_lossy(ts).into_owned();
        let stream = String::from_utf8_lossy(stream).into_owned();
        let mut cur = self.partial.take().unwrap_or(LogLine { timestamp: ts, stream, text: Vec::new() });
        cur.text.extend_from_slice(text);
        if tag == b"P" {
            self.partial = Some(cur);
        } else {
            out.push(cur);
        }
    }
}

fn render(l: &LogLine, timestamps: bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(l.text.len() + 40);
    if timestamps {
        v.extend_from_slice(l.timestamp.as_bytes());
        v.push(b' ');
    }
    v.extend_from_slice(&l.text);
    v.push(b'\n');
    v
}

struct Filter {
    since: Option<i128>,
    stream: LogStream,
    timestamps: bool,
    remaining: Option<u64>,
}

impl Filter {
    fn keep(&self, l: &LogLine) -> bool {
        let stream_ok = match self.stream {
            LogStream::All => true,
            LogStream::Stdout => l.stream == "stdout",
            LogStream::Stderr => l.stream == "stderr",
        };
        stream_ok && self.since.is_none_or(|s| parse_ts(&l.timestamp).is_some_and(|t| t >= s))
    }

    /// Renders the lines, applying the byte limit; `None` once the limit is used up.
    fn emit(&mut self, lines: &[LogLine]) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        for l in lines.iter().filter(|l| self.keep(l)) {
            out.extend(render(l, self.timestamps));
        }
        if let Some(rem) = self.remaining.as_mut() {
            if out.len() as u64 >= *rem {
                out.truncate(*rem as usize);
                *rem = 0;
                return (out, true);
            }
            *rem -= out.len() as u64;
        }
        (out, false)
    }
}

/// Reads a CRI log file for `kubectl logs`. With `follow`, keeps reading as the file grows
/// until `done` resolves (the container is gone), then reads what is left and ends.
pub fn read_logs(
    path: PathBuf,
    opts: LogOptions,
    done: impl Future<Output = ()> + Send + 'static,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(16);
    tokio::spawn(async move {
        if let Err(e) = pump(&path, opts, done, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn pump(
    path: &Path,
    opts: LogOptions,
    done: impl Future<Output = ()> + Send,
    tx: &tokio::sync::mpsc::Sender<io::Result<Bytes>>,
) -> io::Result<()> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut filter = Filter {
        since: opts.since_time.as_deref().and_then(parse_ts),
        stream: opts.stream,
        timestamps: opts.timestamps,
        remaining: opts.limit_bytes,
    };
    let mut parser = Parser::default();
    let mut data = Vec::new();
    file.read_to_end(&mut data).await?;
    let mut lines = Vec::new();
    parser.push(&data, &mut lines);
    lines.retain(|l| filter.keep(l));
    if let Some(n) = opts.tail_lines {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    let (out, exhausted) = filter.emit(&lines);
    if !out.is_empty() && tx.send(Ok(Bytes::from(out))).await.is_err() {
        return Ok(());
    }
    if exhausted || !opts.follow {
        return Ok(());
    }
    let mut pos = data.len() as u64;
    tokio::pin!(done);
    let mut finished = false;
    loop {
        if !finished {
            tokio::select! {
                _ = &mut done => finished = true,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = tx.closed() => return Ok(()),
            }
        }
        let len = tokio::fs::metadata(path).await.map(|m| m.len()).unwrap_or(pos);
        if len < pos {
            // Truncated: start over.
            pos = 0;
        }
        if len > pos {
            file.seek(io::SeekFrom::Start(pos)).await?;
            let mut buf = Vec::new();
            (&mut file).take(len - pos).read_to_end(&mut buf).await?;
            pos += buf.len() as u64;
            let mut lines = Vec::new();
            parser.push(&buf, &mut lines);
            let (out, exhausted) = filter.emit(&lines);
            if !out.is_empty() && tx.send(Ok(Bytes::from(out))).await.is_err() {
                return Ok(());
            }
            if exhausted {
                return Ok(());
            }
        }
        if finished {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    const LOG: &str = "2026-01-01T00:00:01.000000000Z stdout F one\n\
2026-01-01T00:00:02.000000000Z stderr F two\n\
2026-01-01T00:00:03.000000000Z stdout P thr\n\
2026-01-01T00:00:03.100000000Z stdout F ee\n\
2026-01-01T00:00:04.000000000Z stdout F four\n";

    async fn collect(path: PathBuf, opts: LogOptions) -> String {
        let s = read_logs(path, opts, async {});
        let parts: Vec<_> = s.collect().await;
        let mut out = Vec::new();
        for p in parts {
            out.extend_from_slice(&p.expect("read"));
        }
        String::from_utf8(out).expect("utf8")
    }

    fn file(content: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("0.log");
        std::fs::write(&p, content).expect("write");
        (d, p)
    }

    #[test]
    fn log_paths_follow_the_kubelet_layout() {
        assert_eq!(
            log_path(Path::new("/var/log/pods"), "default", "web", "u-1", "app", 2),
            PathBuf::from("/var/log/pods/default_web_u-1/app/2.log")
        );
    }

    #[tokio::test]
    async fn reads_joins_partials_and_filters() {
        let (_d, p) = file(LOG);
        assert_eq!(collect(p.clone(), LogOptions::default()).await, "one\ntwo\nthree\nfour\n");
        assert_eq!(collect(p.clone(), LogOptions { tail_lines: Some(2), ..Default::default() }).await, "three\nfour\n");
        assert_eq!(
            collect(p.clone(), LogOptions { stream: LogStream::Stderr, timestamps: true, ..Default::default() }).await,
            "2026-01-01T00:00:02.000000000Z two\n"
        );
        assert_eq!(
            collect(p.clone(), LogOptions { since_time: Some("2026-01-01T00:00:02.5Z".into()), ..Default::default() })
                .await,
            "three\nfour\n"
        );
        assert_eq!(collect(p, LogOptions { limit_bytes: Some(6), ..Default::default() }).await, "one\ntw");
    }

    #[tokio::test]
    async fn follow_sees_appended_lines_until_done() {
        let (_d, p) = file("2026-01-01T00:00:01.000000000Z stdout F one\n");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let mut s = Box::pin(read_logs(p.clone(), LogOptions { follow: true, ..Default::default() }, async {
            let _ = stop_rx.await;
        }));
        assert_eq!(&s.next().await.expect("first").expect("ok")[..], b"one\n");
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(&p).expect("open");
            f.write_all(b"2026-01-01T00:00:02.000000000Z stdout F two\n").expect("append");
        }
        assert_eq!(&s.next().await.expect("second").expect("ok")[..], b"two\n");
        let _ = stop_tx.send(());
        assert!(s.next().await.is_none(), "the stream ends once the container is gone");
    }
}
