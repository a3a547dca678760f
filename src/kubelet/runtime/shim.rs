//! The shim: `k3rs shim …`, entered from `main` before anything else, so it never starts the
//! async runtime or parses the k3rs command line.
//!
//! `shim create` is spawned by the runtime. It forks once and the parent exits, so the shim
//! belongs to no k3rs process tree and survives k3rs being stopped or SIGKILLed; the child
//! starts its own session, ignores SIGHUP and SIGPIPE, creates the container through
//! libcontainer (so the container's init is its child), reports `ok <pid>` or
//! `error <message>` on its stdout and executes the monitor program in its place (see
//! `runtime/monitor/main.rs`: a `no_std` program of a few KiB carried inside k3rs): the same
//! PID keeps the child and the stdio pipes, but none of k3rs' image or the heap libcontainer
//! left behind. The monitor polls the container's stdout/stderr (or pty), writes CRI log
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
    /// Mounted in a mount namespace of the shim's own before the container is created.
    #[serde(default)]
    pub rootfs_mount: Option<crate::images::RootfsMount>,
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
        "exec" => exec_main(&args[3..]),
        _ => {
            eprintln!("usage: k3rs shim create|exec …");
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
    // SAFETY: fork in `shim create`, a process that has started no thread yet, so the child may run ordinary Rust code.
    match unsafe { libc::fork() } {
        -1 => {
            println!("error fork: {}", io::Error::last_os_error());
            return 1;
        }
        0 => {}
        _ => return 0,
    }
    // SAFETY: plain syscalls on this process; the handlers named are the kernel's SIG_IGN.
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
        // SAFETY: dup2 onto fd 1 with a descriptor this function holds open; fd 1 is this process's to replace.
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
    // SAFETY: pipe2 writes two descriptors into the two-element array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded: both descriptors are new and owned by nothing else.
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
    // SAFETY: msghdr is plain old data; all-zero is its empty value, filled in below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = cmsg.len() as _;
    // SAFETY: msg points at buffers (iov, cmsg) that outlive the call and whose lengths it carries.
    if unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: msg was filled by recvmsg; CMSG_FIRSTHDR only reads its control fields.
    let hdr = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    // SAFETY: hdr is non-null and points into cmsg, which is live.
    if hdr.is_null() || unsafe { (*hdr).cmsg_type } != libc::SCM_RIGHTS {
        return Err(io::Error::other("no file descriptor received"));
    }
    // SAFETY: an SCM_RIGHTS header carries at least one fd; the read is unaligned-safe.
    let fd = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(hdr) as *const RawFd) };
    // SAFETY: the kernel installed this descriptor for us (close-on-exec); nothing else owns it.
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

    if let Some(m) = &cfg.rootfs_mount {
        m.mount_privately().map_err(|e| format!("mounting the root filesystem: {e}"))?;
    }
    std::env::set_current_dir(&cfg.state_dir).map_err(|e| format!("chdir {}: {e}", cfg.state_dir.display()))?;
    if let Some(dir) = cfg.log_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let spec =
        oci_spec::runtime::Spec::load(cfg.bundle.join("config.json")).map_err(|e| format!("loading the spec: {e}"))?;
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
    let container =
        builder.as_init(&cfg.bundle).with_systemd(false).with_detach(true).build().map_err(|e| format!("{e}"))?;
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

/// The monitor program (src/kubelet/runtime/monitor/main.rs), built by build.rs.
pub static MONITOR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/k3rs-monitor"));

/// The monitor program in a new memory file (close-on-exec) named `name`, ready to be
/// executed with `fexecve` or through `/proc/self/fd/N`.
pub fn monitor_program(name: &std::ffi::CStr) -> io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated name; the descriptor is owned from here on.
    let mem = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if mem < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create succeeded: a new descriptor owned by nothing else.
    let mem = unsafe { OwnedFd::from_raw_fd(mem) };
    if !write_all(mem.as_raw_fd(), MONITOR) {
        return Err(io::Error::last_os_error());
    }
    Ok(mem)
}

/// Becomes the monitor: the program is copied into a memory file and executed from there, so
/// this process keeps its PID, its child (the container) and the stdio pipes, and drops the
/// k3rs image and everything libcontainer left in memory.
fn exec_monitor(c: &Created) -> io::Error {
    for fd in &c.keep {
        // SAFETY: clears close-on-exec on descriptors this process owns (kept for the monitor).
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) };
    }
    let mem = match monitor_program(c"k3rs-shim") {
        Ok(m) => m,
        Err(e) => return e,
    };
    let a = &c.args;
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
    .chain(
        [&a.state_dir, &a.log_path, &a.oom_file]
            .iter()
            .map(|p| CString::new(p.as_os_str().as_bytes()).unwrap_or_default()),
    )
    .collect();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // The monitor needs no environment.
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: argv and envp are NULL-terminated arrays of NUL-terminated strings that outlive the call.
    unsafe { libc::fexecve(mem.as_raw_fd(), argv.as_ptr(), envp.as_ptr()) };
    io::Error::last_os_error()
}

// ---------------------------------------------------------------------------------------
// helpers

fn write_all(fd: RawFd, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: buf is a live slice; write reads at most its length.
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

// ---------------------------------------------------------------------------------------
// exec

/// `shim exec <root> <id> <process.json>`: runs the process described in `process.json`
/// (the container's process with new args and terminal flag) in the container. Without a
/// terminal the process inherits this one's stdio; with one, this process relays its stdin
/// and stdout to the pty, and reads resize requests (cols u16 BE, rows u16 BE) on fd 3.
fn exec_main(args: &[OsString]) -> i32 {
    use libcontainer::container::builder::ContainerBuilder;
    use libcontainer::syscall::syscall::SyscallType;

    // SAFETY: sets SIGPIPE to the kernel's SIG_IGN; no Rust handler is involved.
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
        // SAFETY: waits on our own child, with a status slot we own.
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
        // SAFETY: pfds is a live array of exactly the 3 entries passed.
        if unsafe { libc::poll(pfds.as_mut_ptr(), 3, -1) } < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        if pfds[0].revents != 0 {
            // SAFETY: buf is a live buffer; read writes at most its length.
            let n = unsafe { libc::read(m, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 || !write_all(1, &buf[..n as usize]) {
                break;
            }
        }
        if pfds[1].revents != 0 {
            // SAFETY: buf is a live buffer; read writes at most its length.
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
            // SAFETY: ws is a live 4-byte buffer; read writes at most 4 bytes.
            let n = unsafe { libc::read(3, ws.as_mut_ptr().cast(), 4) };
            if n == 4 {
                let w = libc::winsize {
                    ws_col: u16::from_be_bytes([ws[0], ws[1]]),
                    ws_row: u16::from_be_bytes([ws[2], ws[3]]),
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                };
                // SAFETY: TIOCSWINSZ reads a winsize struct that lives on this stack frame.
                unsafe { libc::ioctl(m, libc::TIOCSWINSZ, &w) };
            } else if n <= 0 {
                ctl_open = false;
            }
        }
    }
    // SAFETY: m is the pty master this function owns; it is not used after this.
    unsafe { libc::close(m) };
}

#[cfg(test)]
mod tests {
    /// The monitor writes exit times without crates; they must read as the rest of the
    /// kubelet's (the `time` crate's) do.
    #[test]
    fn monitor_times_match_the_kubelets() {
        for ns in [0, 1_475_712_429_669_794_202, 951_782_400_000_000_001, 4_102_444_799_999_999_999] {
            let monitor = super::super::monitor_logic::rfc3339_nano(ns);
            assert_eq!(String::from_utf8_lossy(monitor.as_bytes()), crate::domain::time::rfc3339_nanos(ns), "{ns}");
        }
    }
}
