//! The shim: `k3rs shim …`, entered from `main` before anything else, so it never starts the
//! async runtime or parses the k3rs command line.
//!
//! `shim create` is spawned by the runtime. It forks once and the parent exits, so the shim
//! belongs to no k3rs process tree and survives k3rs being stopped or SIGKILLed; the child
//! starts its own session, ignores SIGHUP and SIGPIPE, creates the container through
//! libcontainer (so the container's init is its child), reports `ok <pid>` or
//! `error <message>` on its stdout and re-executes itself as `shim monitor`: the same PID
//! keeps the child and the stdio pipes, but none of the heap libcontainer left behind. The
//! monitor only uses libc: it polls the container's stdout/stderr (or pty), writes CRI log
//! lines, serves attach clients on `attach.sock`, reaps the container, reads the memory
//! cgroup's OOM-kill counter and writes the exit record atomically.
//!
//! `shim exec` runs one command in a running container for `Runtime::exec`: its stdio is the
//! process's (or, with a tty, relayed to a pty), and its exit code is the command's.
//!
//! Attach protocol (both directions `[kind: u8][len: u32 BE][payload]`): from the monitor
//! kind 1 = stdout, 2 = stderr, 3 = exit (payload: i32 BE exit code); from a client kind 0 =
//! stdin data, 1 = resize (cols u16 BE, rows u16 BE), 2 = close stdin.

use std::ffi::{CString, OsString};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What `shim create` needs, passed as one JSON argument.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ShimConfig {
    pub id: String,
    pub bundle: PathBuf,
    /// libcontainer's state root.
    pub root: PathBuf,
    /// The container's directory of shim files (exit record, attach socket, …).
    pub state_dir: PathBuf,
    pub log_path: PathBuf,
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
}

/// File names inside the state dir.
pub const EXIT_FILE: &str = "exit";
pub const ATTACH_SOCKET: &str = "attach.sock";
pub const CONSOLE_SOCKET: &str = "console.sock";
pub const SHIM_PID_FILE: &str = "shim.pid";

/// Entered from `main` when `argv[1] == "shim"`; returns the process exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let sub = args.get(2).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    match sub.as_str() {
        "create" => create_main(&args[3..]),
        "monitor" => monitor_main(&args[3..]),
        "exec" => exec_main(&args[3..]),
        _ => {
            eprintln!("usage: k3rs shim create|monitor|exec …");
            2
        }
    }
}

// ---------------------------------------------------------------------------------------
// create

fn create_main(args: &[OsString]) -> i32 {
    let Some(cfg) = args.first().and_then(|a| serde_json::from_slice::<ShimConfig>(a.as_bytes()).ok()) else {
        println!("error invalid shim config");
        return 2;
    };
    // Leave the caller's process tree: the parent returns at once (the runtime reaps it) and
    // the child is re-parented to init, outside any k3rs process group or session.
    match unsafe { libc::fork() } {
        -1 => {
            println!("error fork: {}", io::Error::last_os_error());
            return 1;
        }
        0 => {}
        _ => return 0,
    }
    unsafe {
        libc::setsid();
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    // libcontainer's own diagnostics go to shim.log (the shim's stderr).
    let filter = std::env::var("K3RS_SHIM_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .try_init();
    match create_container(&cfg) {
        Ok(monitor) => {
            let _ = std::fs::write(cfg.state_dir.join(SHIM_PID_FILE), std::process::id().to_string());
            println!("ok {}", monitor.pid);
            let _ = io::stdout().flush();
            redirect_stdout_to_null();
            let err = exec_monitor(&monitor);
            // Only reached when exec failed; the container is left to init.
            eprintln!("shim: exec monitor: {err}");
            1
        }
        Err(e) => {
            println!("error {e}");
            1
        }
    }
}

fn redirect_stdout_to_null() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }
}

struct MonitorArgs {
    pid: i32,
    state_dir: PathBuf,
    log_path: PathBuf,
    out_fd: RawFd,
    err_fd: RawFd,
    in_fd: RawFd,
    pty_fd: RawFd,
    listen_fd: RawFd,
    stdin_once: bool,
    oom_file: PathBuf,
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn listen_unix(name: &str) -> io::Result<std::os::unix::net::UnixListener> {
    let _ = std::fs::remove_file(name);
    std::os::unix::net::UnixListener::bind(name)
}

/// Receives one fd sent with SCM_RIGHTS (the pty master libcontainer's init sends).
fn recv_fd(sock: RawFd) -> io::Result<OwnedFd> {
    let mut buf = [0u8; 256];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut cmsg = [0u8; 64];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = cmsg.len() as _;
    if unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let hdr = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if hdr.is_null() || unsafe { (*hdr).cmsg_type } != libc::SCM_RIGHTS {
        return Err(io::Error::other("no file descriptor received"));
    }
    let fd = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(hdr) as *const RawFd) };
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A console socket served on a thread while libcontainer's build waits for the init,
/// which sends the pty master before it reports ready.
fn console_listener(name: &str) -> io::Result<std::thread::JoinHandle<io::Result<OwnedFd>>> {
    let l = listen_unix(name)?;
    Ok(std::thread::spawn(move || {
        let (s, _) = l.accept()?;
        recv_fd(s.as_raw_fd())
    }))
}

fn oom_file(cgroups_path: Option<&Path>) -> PathBuf {
    let Some(cg) = cgroups_path else { return PathBuf::new() };
    let rel = cg.strip_prefix("/").unwrap_or(cg);
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        Path::new("/sys/fs/cgroup").join(rel).join("memory.events")
    } else {
        Path::new("/sys/fs/cgroup/memory").join(rel).join("memory.oom_control")
    }
}

struct Created {
    pid: i32,
    args: MonitorArgs,
    keep: Vec<OwnedFd>,
}

impl std::ops::Deref for Created {
    type Target = MonitorArgs;
    fn deref(&self) -> &MonitorArgs {
        &self.args
    }
}

fn create_container(cfg: &ShimConfig) -> Result<Created, String> {
    use libcontainer::container::builder::ContainerBuilder;
    use libcontainer::syscall::syscall::SyscallType;

    std::env::set_current_dir(&cfg.state_dir).map_err(|e| format!("chdir {}: {e}", cfg.state_dir.display()))?;
    if let Some(dir) = cfg.log_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let spec = oci_spec::runtime::Spec::load(cfg.bundle.join("config.json")).map_err(|e| format!("loading the spec: {e}"))?;
    let cgroups_path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
    let null = || std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").map(OwnedFd::from);

    let mut keep = Vec::new();
    let mut builder = ContainerBuilder::new(cfg.id.clone(), SyscallType::default())
        .with_root_path(&cfg.root)
        .map_err(|e| e.to_string())?;
    let (mut out_fd, mut err_fd, mut in_fd) = (-1, -1, -1);
    let mut console = None;
    if cfg.tty {
        console = Some(console_listener(CONSOLE_SOCKET).map_err(|e| format!("console socket: {e}"))?);
        builder = builder.with_console_socket(Some(cfg.state_dir.join(CONSOLE_SOCKET)));
    } else {
        let (or, ow) = pipe().map_err(|e| e.to_string())?;
        let (er, ew) = pipe().map_err(|e| e.to_string())?;
        builder = builder.with_stdout(ow).with_stderr(ew);
        out_fd = or.as_raw_fd();
        err_fd = er.as_raw_fd();
        keep.push(or);
        keep.push(er);
        if cfg.stdin {
            let (ir, iw) = pipe().map_err(|e| e.to_string())?;
            builder = builder.with_stdin(ir);
            in_fd = iw.as_raw_fd();
            keep.push(iw);
        } else {
            builder = builder.with_stdin(null().map_err(|e| e.to_string())?);
        }
    }
    let container = builder
        .as_init(&cfg.bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|e| format!("{e}"))?;
    let pid = container.pid().map(|p| p.as_raw()).ok_or("the container has no pid")?;
    let mut pty_fd = -1;
    if let Some(handle) = console {
        let master = handle
            .join()
            .map_err(|_| "console thread panicked".to_string())?
            .map_err(|e| format!("receiving the pty master: {e}"))?;
        pty_fd = master.as_raw_fd();
        keep.push(master);
        let _ = std::fs::remove_file(CONSOLE_SOCKET);
    }
    let listener = listen_unix(ATTACH_SOCKET).map_err(|e| format!("attach socket: {e}"))?;
    let listen_fd = listener.as_raw_fd();
    keep.push(OwnedFd::from(listener));
    Ok(Created {
        pid,
        args: MonitorArgs {
            pid,
            state_dir: cfg.state_dir.clone(),
            log_path: cfg.log_path.clone(),
            out_fd,
            err_fd,
            in_fd,
            pty_fd,
            listen_fd,
            stdin_once: cfg.stdin_once,
            oom_file: oom_file(cgroups_path.as_deref()),
        },
        keep,
    })
}

fn exec_monitor(c: &Created) -> io::Error {
    for fd in &c.keep {
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) };
    }
    let a = &c.args;
    let exe = CString::new("/proc/self/exe").unwrap_or_default();
    let args: Vec<CString> = [
        "k3rs-shim".to_string(),
        "shim".into(),
        "monitor".into(),
        a.pid.to_string(),
        a.out_fd.to_string(),
        a.err_fd.to_string(),
        a.in_fd.to_string(),
        a.pty_fd.to_string(),
        a.listen_fd.to_string(),
        if a.stdin_once { "1" } else { "0" }.into(),
    ]
    .into_iter()
    .map(|s| CString::new(s).unwrap_or_default())
    .chain([&a.state_dir, &a.log_path, &a.oom_file].iter().map(|p| CString::new(p.as_os_str().as_bytes()).unwrap_or_default()))
    .collect();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // The monitor needs no environment; an empty one keeps its pages few.
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    unsafe { libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    io::Error::last_os_error()
}

// ---------------------------------------------------------------------------------------
// monitor: libc only, small buffers, one thread.

const MAX_LINE: usize = 16 * 1024;
const MAX_CLIENTS: usize = 16;

struct Stream {
    fd: RawFd,
    name: &'static [u8],
    kind: u8,
    partial: Vec<u8>,
}

struct Client {
    fd: RawFd,
    buf: Vec<u8>,
    sent_stdin: bool,
}

struct Monitor {
    log_fd: RawFd,
    streams: Vec<Stream>,
    in_fd: RawFd,
    pty_fd: RawFd,
    listen_fd: RawFd,
    clients: Vec<Client>,
    stdin_once: bool,
}

fn parse_fd(a: Option<&OsString>) -> RawFd {
    a.and_then(|s| s.to_str()).and_then(|s| s.parse().ok()).unwrap_or(-1)
}

fn monitor_main(args: &[OsString]) -> i32 {
    let pid = parse_fd(args.first());
    if pid <= 0 || args.len() < 10 {
        return 2;
    }
    let (out_fd, err_fd, in_fd, pty_fd, listen_fd) =
        (parse_fd(args.get(1)), parse_fd(args.get(2)), parse_fd(args.get(3)), parse_fd(args.get(4)), parse_fd(args.get(5)));
    let stdin_once = args[6] == "1";
    let state_dir = PathBuf::from(&args[7]);
    let log_path = PathBuf::from(&args[8]);
    let oom_file = PathBuf::from(&args[9]);

    // SIGCHLD through a signalfd, so waiting and reading share one poll.
    let sfd = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)
    };
    let log_c = CString::new(log_path.as_os_str().as_bytes()).unwrap_or_default();
    let log_fd = unsafe { libc::open(log_c.as_ptr(), libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC, 0o640) };
    let mut m = Monitor { log_fd, streams: Vec::new(), in_fd, pty_fd, listen_fd, clients: Vec::new(), stdin_once };
    if pty_fd >= 0 {
        m.streams.push(Stream { fd: pty_fd, name: b"stdout", kind: 1, partial: Vec::new() });
    } else {
        m.streams.push(Stream { fd: out_fd, name: b"stdout", kind: 1, partial: Vec::new() });
        m.streams.push(Stream { fd: err_fd, name: b"stderr", kind: 2, partial: Vec::new() });
    }
    let mut status: Option<libc::c_int> = None;
    let mut drain_deadline: Option<i64> = None;
    loop {
        if status.is_some() && (m.streams.iter().all(|s| s.fd < 0) || drain_deadline.is_some_and(|d| now_ns() > d)) {
            break;
        }
        let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(4 + m.clients.len());
        let ev = libc::POLLIN;
        pfds.push(libc::pollfd { fd: sfd, events: ev, revents: 0 });
        for s in &m.streams {
            pfds.push(libc::pollfd { fd: s.fd, events: ev, revents: 0 });
        }
        pfds.push(libc::pollfd { fd: if status.is_none() { m.listen_fd } else { -1 }, events: ev, revents: 0 });
        for c in &m.clients {
            pfds.push(libc::pollfd { fd: c.fd, events: ev, revents: 0 });
        }
        let timeout = if status.is_some() { 100 } else { -1 };
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as _, timeout) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        // Reaped on every wakeup, not only on SIGCHLD: the container may have exited before
        // this process blocked the signal (it is started as soon as `create` reported).
        if status.is_none() || pfds[0].revents != 0 {
            let mut info = [0u8; 128];
            while unsafe { libc::read(sfd, info.as_mut_ptr().cast(), info.len()) } > 0 {}
            let mut st = 0;
            loop {
                let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
                if r <= 0 {
                    break;
                }
                if r == pid {
                    status = Some(st);
                    drain_deadline = Some(now_ns() + 2_000_000_000);
                }
            }
        }
        for i in 0..m.streams.len() {
            if pfds[1 + i].revents != 0 {
                m.read_stream(i);
            }
        }
        let li = 1 + m.streams.len();
        if pfds[li].revents & libc::POLLIN != 0 {
            let fd = unsafe { libc::accept4(m.listen_fd, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) };
            if fd >= 0 {
                if m.clients.len() >= MAX_CLIENTS {
                    unsafe { libc::close(fd) };
                } else {
                    m.clients.push(Client { fd, buf: Vec::new(), sent_stdin: false });
                }
            }
        }
        let ready: Vec<RawFd> = pfds[li + 1..].iter().filter(|p| p.revents != 0).map(|p| p.fd).collect();
        for fd in ready {
            m.read_client(fd);
        }
    }
    for i in 0..m.streams.len() {
        m.flush_partial(i);
    }
    let (code, signal) = match status {
        Some(st) if libc::WIFEXITED(st) => (libc::WEXITSTATUS(st), 0),
        Some(st) if libc::WIFSIGNALED(st) => (128 + libc::WTERMSIG(st), libc::WTERMSIG(st)),
        _ => (255, 0),
    };
    let oom = read_oom_kills(&oom_file) > 0;
    let record = format!("{code} {signal} {} {}\n", u8::from(oom), now_ns());
    let tmp = state_dir.join("exit.tmp");
    if std::fs::write(&tmp, record).is_ok() {
        let _ = std::fs::rename(&tmp, state_dir.join(EXIT_FILE));
    }
    let frame = code.to_be_bytes();
    for c in std::mem::take(&mut m.clients) {
        send_frame(c.fd, 3, &frame);
        unsafe { libc::close(c.fd) };
    }
    0
}

fn read_oom_kills(path: &Path) -> u64 {
    if path.as_os_str().is_empty() {
        return 0;
    }
    let Ok(text) = std::fs::read_to_string(path) else { return 0 };
    text.lines()
        .filter_map(|l| l.strip_prefix("oom_kill "))
        .filter_map(|v| v.trim().parse().ok())
        .next()
        .unwrap_or(0)
}

fn now_ns() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// `2006-01-02T15:04:05.999999999Z` for a UNIX time in nanoseconds (civil-from-days).
pub fn rfc3339_nano(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z", sod / 3600, sod % 3600 / 60, sod % 60)
}

fn write_all(fd: RawFd, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        buf = &buf[n as usize..];
    }
    true
}

fn send_frame(fd: RawFd, kind: u8, data: &[u8]) -> bool {
    let mut f = Vec::with_capacity(5 + data.len());
    f.push(kind);
    f.extend_from_slice(&(data.len() as u32).to_be_bytes());
    f.extend_from_slice(data);
    write_all(fd, &f)
}

impl Monitor {
    fn log_line(&self, stream: &[u8], tag: u8, text: &[u8]) {
        if self.log_fd < 0 {
            return;
        }
        let ts = rfc3339_nano(now_ns());
        let mut line = Vec::with_capacity(ts.len() + text.len() + 12);
        line.extend_from_slice(ts.as_bytes());
        line.push(b' ');
        line.extend_from_slice(stream);
        line.push(b' ');
        line.push(tag);
        line.push(b' ');
        line.extend_from_slice(text);
        line.push(b'\n');
        write_all(self.log_fd, &line);
    }

    fn read_stream(&mut self, i: usize) {
        let mut buf = [0u8; 8192];
        let fd = self.streams[i].fd;
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                return;
            }
            // EOF, or EIO once the pty's last slave is closed.
            self.flush_partial(i);
            unsafe { libc::close(fd) };
            self.streams[i].fd = -1;
            return;
        }
        let data = &buf[..n as usize];
        let kind = self.streams[i].kind;
        self.clients.retain(|c| {
            let ok = send_frame(c.fd, kind, data);
            if !ok {
                unsafe { libc::close(c.fd) };
            }
            ok
        });
        let mut partial = std::mem::take(&mut self.streams[i].partial);
        partial.extend_from_slice(data);
        let name = self.streams[i].name;
        let mut start = 0;
        while let Some(pos) = partial[start..].iter().position(|b| *b == b'\n') {
            let mut line = &partial[start..start + pos];
            // A tty ends lines with CRLF; the log keeps the text only.
            if self.pty_fd >= 0 {
                line = line.strip_suffix(b"\r").unwrap_or(line);
            }
            let chunks: Vec<&[u8]> = line.chunks(MAX_LINE).collect();
            if chunks.is_empty() {
                self.log_line(name, b'F', b"");
            }
            for (j, chunk) in chunks.iter().enumerate() {
                self.log_line(name, if j + 1 == chunks.len() { b'F' } else { b'P' }, chunk);
            }
            start += pos + 1;
        }
        let mut rest = partial.split_off(start);
        while rest.len() >= MAX_LINE {
            let tail = rest.split_off(MAX_LINE);
            self.log_line(name, b'P', &rest);
            rest = tail;
        }
        self.streams[i].partial = rest;
    }

    fn flush_partial(&mut self, i: usize) {
        let p = std::mem::take(&mut self.streams[i].partial);
        if !p.is_empty() {
            self.log_line(self.streams[i].name, b'F', &p);
        }
    }

    fn close_stdin(&mut self) {
        if self.in_fd >= 0 {
            unsafe { libc::close(self.in_fd) };
            self.in_fd = -1;
        }
    }

    fn drop_client(&mut self, fd: RawFd) {
        if let Some(pos) = self.clients.iter().position(|c| c.fd == fd) {
            let c = self.clients.remove(pos);
            unsafe { libc::close(c.fd) };
            if c.sent_stdin && self.stdin_once {
                self.close_stdin();
                self.stdin_once = false;
            }
        }
    }

    fn read_client(&mut self, fd: RawFd) {
        let mut buf = [0u8; 4096];
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            self.drop_client(fd);
            return;
        }
        let Some(ci) = self.clients.iter().position(|c| c.fd == fd) else { return };
        self.clients[ci].buf.extend_from_slice(&buf[..n as usize]);
        loop {
            let b = &self.clients[ci].buf;
            if b.len() < 5 {
                break;
            }
            let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
            if len > 1 << 20 {
                self.drop_client(fd);
                return;
            }
            if b.len() < 5 + len {
                break;
            }
            let kind = b[0];
            let payload: Vec<u8> = b[5..5 + len].to_vec();
            self.clients[ci].buf.drain(..5 + len);
            match kind {
                0 => {
                    self.clients[ci].sent_stdin = true;
                    let target = if self.pty_fd >= 0 { self.pty_fd } else { self.in_fd };
                    if target >= 0 {
                        write_all(target, &payload);
                    }
                }
                1 if payload.len() == 4 && self.pty_fd >= 0 => {
                    let ws = libc::winsize {
                        ws_col: u16::from_be_bytes([payload[0], payload[1]]),
                        ws_row: u16::from_be_bytes([payload[2], payload[3]]),
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    unsafe { libc::ioctl(self.pty_fd, libc::TIOCSWINSZ, &ws) };
                }
                2 => {
                    if self.pty_fd >= 0 {
                        // EOF on a terminal is ^D.
                        write_all(self.pty_fd, &[4]);
                    } else {
                        self.close_stdin();
                    }
                }
                _ => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// exec

/// `shim exec <root> <id> <process.json>`: runs the process described in `process.json`
/// (the container's process with new args and terminal flag) in the container. Without a
/// terminal the process inherits this one's stdio; with one, this process relays its stdin
/// and stdout to the pty, and reads resize requests (cols u16 BE, rows u16 BE) on fd 3.
fn exec_main(args: &[OsString]) -> i32 {
    use libcontainer::container::builder::ContainerBuilder;
    use libcontainer::syscall::syscall::SyscallType;

    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    if args.len() < 3 {
        eprintln!("usage: k3rs shim exec ROOT ID PROCESS_JSON");
        return 126;
    }
    let root = PathBuf::from(&args[0]);
    let id = args[1].to_string_lossy().into_owned();
    let process_json = PathBuf::from(&args[2]);
    let tty = std::fs::read(&process_json)
        .ok()
        .and_then(|b| serde_json::from_slice::<oci_spec::runtime::Process>(&b).ok())
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let mut builder = match ContainerBuilder::new(id, SyscallType::default()).with_root_path(&root) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("exec: {e}");
            return 126;
        }
    };
    let mut console = None;
    let sock_dir = std::env::temp_dir().join(format!("k3rs-exec-{}", std::process::id()));
    if tty {
        if std::fs::create_dir_all(&sock_dir).is_err() || std::env::set_current_dir(&sock_dir).is_err() {
            eprintln!("exec: cannot make a console socket directory");
            return 126;
        }
        match console_listener(CONSOLE_SOCKET) {
            Ok(h) => console = Some(h),
            Err(e) => {
                eprintln!("exec: console socket: {e}");
                return 126;
            }
        }
        builder = builder.with_console_socket(Some(sock_dir.join(CONSOLE_SOCKET)));
    }
    let result = builder.as_tenant().with_process(Some(&process_json)).with_detach(tty).build();
    let pid = match result {
        Ok(pid) => pid.as_raw(),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&sock_dir);
            eprintln!("exec: {e}");
            return 126;
        }
    };
    if let Some(h) = console {
        let master = h.join().ok().and_then(|r| r.ok());
        let _ = std::fs::remove_dir_all(&sock_dir);
        if let Some(master) = master {
            relay_pty(master);
        }
    }
    let mut st = 0;
    loop {
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r == pid {
            break;
        }
        if r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return 255;
        }
    }
    if libc::WIFEXITED(st) {
        libc::WEXITSTATUS(st)
    } else if libc::WIFSIGNALED(st) {
        128 + libc::WTERMSIG(st)
    } else {
        255
    }
}

/// Copies stdin → pty and pty → stdout until the pty closes; resizes from fd 3.
fn relay_pty(master: OwnedFd) {
    let m = master.into_raw_fd();
    let mut stdin_open = true;
    let mut ctl_open = true;
    let mut buf = [0u8; 8192];
    loop {
        let mut pfds = [
            libc::pollfd { fd: m, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: if stdin_open { 0 } else { -1 }, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: if ctl_open { 3 } else { -1 }, events: libc::POLLIN, revents: 0 },
        ];
        if unsafe { libc::poll(pfds.as_mut_ptr(), 3, -1) } < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        if pfds[0].revents != 0 {
            let n = unsafe { libc::read(m, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 || !write_all(1, &buf[..n as usize]) {
                break;
            }
        }
        if pfds[1].revents != 0 {
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                stdin_open = false;
                write_all(m, &[4]);
            } else {
                write_all(m, &buf[..n as usize]);
            }
        }
        if pfds[2].revents != 0 {
            let mut ws = [0u8; 4];
            let n = unsafe { libc::read(3, ws.as_mut_ptr().cast(), 4) };
            if n == 4 {
                let w = libc::winsize {
                    ws_col: u16::from_be_bytes([ws[0], ws[1]]),
                    ws_row: u16::from_be_bytes([ws[2], ws[3]]),
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                };
                unsafe { libc::ioctl(m, libc::TIOCSWINSZ, &w) };
            } else if n <= 0 {
                ctl_open = false;
            }
        }
    }
    unsafe { libc::close(m) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_nano_formats_unix_time() {
        assert_eq!(rfc3339_nano(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339_nano(1_475_712_429_669_794_202), "2016-10-06T00:07:09.669794202Z");
        assert_eq!(rfc3339_nano(951_782_400_000_000_001), "2000-02-29T00:00:00.000000001Z");
    }
}
