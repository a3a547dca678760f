//! The container monitor: what a container's shim becomes once the container exists.
//!
//! `k3rs shim create` (the k3rs binary, with libcontainer) creates the container and then
//! executes this program in its place, keeping its PID, the container as its child and the
//! stdio pipes. It lives as long as the container, one per container, so it is a separate,
//! tiny program: `no_std`, no libc, no heap, system calls made directly (x86_64 and aarch64).
//! `build.rs` compiles it and the k3rs binary carries it (see `runtime::monitor`), so k3rs
//! stays one file.
//!
//! It polls the container's stdout/stderr (or pty), writes CRI log lines, relays output to
//! attach clients on `attach.sock` and their stdin/resizes to the container, reaps the
//! container, reads the memory cgroup's OOM-kill counter and writes the exit record
//! (`<code> <signal> <oom 0|1> <unix ns>`) atomically.
//!
//! Arguments (after `k3rs-shim shim monitor`): container pid, stdout fd, stderr fd, stdin fd,
//! pty fd, attach listener fd (-1 when absent), stdin-once 0|1, state dir, log path, OOM file.
//!
//! Run as `k3rs-holder holder` it is instead a pod's namespace holder (upstream's pause
//! container): it forks, prints the child's PID on stdout and exits; the child, in a session
//! of its own and named `k3rs-holder`, does nothing until it is killed. It keeps the pod's
//! network, IPC and UTS namespaces alive (it is started inside them) for the containers that
//! join them through `/proc/<pid>/ns/*`, whatever happens to k3rs.

#![no_std]
#![no_main]
#![no_builtins]

#[path = "logic.rs"]
mod logic;

use logic::{Buf, FrameParser, LineBuf, Request};

mod sys {
    #[cfg(target_arch = "x86_64")]
    mod nr {
        pub const READ: usize = 0;
        pub const CLOSE: usize = 3;
        pub const IOCTL: usize = 16;
        pub const RT_SIGPROCMASK: usize = 14;
        pub const WRITEV: usize = 20;
        pub const WAIT4: usize = 61;
        pub const CLOCK_GETTIME: usize = 228;
        pub const EXIT_GROUP: usize = 231;
        pub const OPENAT: usize = 257;
        pub const RENAMEAT: usize = 264;
        pub const PPOLL: usize = 271;
        pub const ACCEPT4: usize = 288;
        pub const SIGNALFD4: usize = 289;
        pub const CLONE: usize = 56;
        pub const SETSID: usize = 112;
        pub const PRCTL: usize = 157;
    }
    #[cfg(target_arch = "aarch64")]
    mod nr {
        pub const IOCTL: usize = 29;
        pub const RENAMEAT: usize = 38;
        pub const OPENAT: usize = 56;
        pub const CLOSE: usize = 57;
        pub const READ: usize = 63;
        pub const WRITEV: usize = 66;
        pub const PPOLL: usize = 73;
        pub const SIGNALFD4: usize = 74;
        pub const EXIT_GROUP: usize = 94;
        pub const CLOCK_GETTIME: usize = 113;
        pub const RT_SIGPROCMASK: usize = 135;
        pub const ACCEPT4: usize = 242;
        pub const WAIT4: usize = 260;
        pub const CLONE: usize = 220;
        pub const SETSID: usize = 157;
        pub const PRCTL: usize = 167;
    }

    pub const EINTR: isize = 4;
    pub const AT_FDCWD: isize = -100;
    pub const O_RDONLY: usize = 0;
    pub const O_WRONLY: usize = 1;
    pub const O_CREAT: usize = 0o100;
    pub const O_TRUNC: usize = 0o1000;
    pub const O_APPEND: usize = 0o2000;
    pub const O_NONBLOCK: usize = 0o4000;
    pub const O_CLOEXEC: usize = 0o2000000;
    pub const POLLIN: i16 = 1;
    pub const SIGCHLD: usize = 17;
    pub const WNOHANG: usize = 1;
    pub const TIOCSWINSZ: usize = 0x5414;

    #[repr(C)]
    pub struct PollFd {
        pub fd: i32,
        pub events: i16,
        pub revents: i16,
    }

    #[repr(C)]
    pub struct IoVec {
        pub base: *const u8,
        pub len: usize,
    }

    #[cfg(target_arch = "x86_64")]
    unsafe fn syscall(n: usize, a: usize, b: usize, c: usize, d: usize, e: usize) -> isize {
        let ret: isize;
        core::arch::asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a, in("rsi") b, in("rdx") c,
            in("r10") d, in("r8") e, lateout("rcx") _, lateout("r11") _, options(nostack));
        ret
    }

    #[cfg(target_arch = "aarch64")]
    unsafe fn syscall(n: usize, a: usize, b: usize, c: usize, d: usize, e: usize) -> isize {
        let ret: isize;
        core::arch::asm!("svc 0", in("x8") n, inlateout("x0") a as isize => ret, in("x1") b, in("x2") c,
            in("x3") d, in("x4") e, options(nostack));
        ret
    }

    pub fn read(fd: i32, buf: &mut [u8]) -> isize {
        unsafe { syscall(nr::READ, fd as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0) }
    }

    pub fn writev(fd: i32, iov: &[IoVec]) -> isize {
        unsafe { syscall(nr::WRITEV, fd as usize, iov.as_ptr() as usize, iov.len(), 0, 0) }
    }

    pub fn close(fd: i32) {
        unsafe { syscall(nr::CLOSE, fd as usize, 0, 0, 0, 0) };
    }

    /// `path` must be NUL-terminated.
    pub fn open(path: *const u8, flags: usize, mode: usize) -> i32 {
        unsafe { syscall(nr::OPENAT, AT_FDCWD as usize, path as usize, flags, mode, 0) as i32 }
    }

    pub fn rename(from: *const u8, to: *const u8) -> isize {
        unsafe { syscall(nr::RENAMEAT, AT_FDCWD as usize, from as usize, AT_FDCWD as usize, to as usize, 0) }
    }

    pub fn ppoll(fds: &mut [PollFd], timeout_ms: i64) -> isize {
        let ts = [timeout_ms / 1000, timeout_ms % 1000 * 1_000_000];
        let tsp = if timeout_ms < 0 { 0 } else { ts.as_ptr() as usize };
        unsafe { syscall(nr::PPOLL, fds.as_mut_ptr() as usize, fds.len(), tsp, 0, 8) }
    }

    pub fn wait_any(status: &mut i32) -> isize {
        unsafe { syscall(nr::WAIT4, -1isize as usize, status as *mut i32 as usize, WNOHANG, 0, 0) }
    }

    /// A non-blocking signalfd for SIGCHLD, which is blocked.
    pub fn sigchld_fd() -> i32 {
        let mask: u64 = 1 << (SIGCHLD - 1);
        unsafe {
            syscall(nr::RT_SIGPROCMASK, 0 /* SIG_BLOCK */, &mask as *const u64 as usize, 0, 8, 0);
            syscall(nr::SIGNALFD4, -1isize as usize, &mask as *const u64 as usize, 8, O_NONBLOCK | O_CLOEXEC, 0) as i32
        }
    }

    pub fn accept(fd: i32) -> i32 {
        unsafe { syscall(nr::ACCEPT4, fd as usize, 0, 0, O_CLOEXEC, 0) as i32 }
    }

    pub fn set_winsize(fd: i32, cols: u16, rows: u16) {
        let ws: [u16; 4] = [rows, cols, 0, 0];
        unsafe { syscall(nr::IOCTL, fd as usize, TIOCSWINSZ, ws.as_ptr() as usize, 0, 0) };
    }

    pub fn now_ns() -> i64 {
        let mut ts = [0i64; 2];
        unsafe {
            syscall(nr::CLOCK_GETTIME, 0 /* CLOCK_REALTIME */, ts.as_mut_ptr() as usize, 0, 0, 0)
        };
        ts[0] * 1_000_000_000 + ts[1]
    }

    /// fork(): the child gets 0, the parent the child's PID (negative: an error).
    pub fn fork() -> isize {
        // clone(SIGCHLD) with no stack and no flags is fork on both architectures.
        unsafe { syscall(nr::CLONE, SIGCHLD, 0, 0, 0, 0) }
    }

    pub fn setsid() {
        unsafe { syscall(nr::SETSID, 0, 0, 0, 0, 0) };
    }

    /// `name` must be NUL-terminated (at most 16 bytes with the NUL).
    pub fn set_name(name: &[u8]) {
        unsafe { syscall(nr::PRCTL, 15 /* PR_SET_NAME */, name.as_ptr() as usize, 0, 0, 0) };
    }

    pub fn exit(code: i32) -> ! {
        loop {
            unsafe { syscall(nr::EXIT_GROUP, code as usize, 0, 0, 0, 0) };
        }
    }
}

// The entry point: the stack holds argc, then argv.
#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".globl _start",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {entry}",
    "ud2",
    entry = sym entry,
);

#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    ".globl _start",
    "_start:",
    "mov x29, xzr",
    "mov x30, xzr",
    "mov x0, sp",
    "bl {entry}",
    "brk #0",
    entry = sym entry,
);

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    sys::exit(255)
}

// The precompiled `core` refers to the unwinding personality; with panic=abort nothing
// unwinds, so it is never called.
#[no_mangle]
extern "C" fn rust_eh_personality() {}

// What the compiler calls for copies and fills (`no_builtins` keeps these loops loops).
#[no_mangle]
unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    let mut i = 0;
    while i < n {
        *dst.add(i) = *src.add(i);
        i += 1;
    }
    dst
}

#[no_mangle]
unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) {
        return memcpy(dst, src, n);
    }
    let mut i = n;
    while i > 0 {
        i -= 1;
        *dst.add(i) = *src.add(i);
    }
    dst
}

#[no_mangle]
unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    let mut i = 0;
    while i < n {
        *dst.add(i) = c as u8;
        i += 1;
    }
    dst
}

#[no_mangle]
unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        let (x, y) = (*a.add(i), *b.add(i));
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

#[no_mangle]
unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    memcmp(a, b, n)
}

unsafe extern "C" fn entry(sp: *const usize) -> ! {
    let argc = *sp;
    let argv = sp.add(1) as *const *const u8;
    if argc == 2 && arg(*argv.add(1)) == b"holder" {
        hold();
    }
    let mut args: [&[u8]; 13] = [b""; 13];
    if argc < args.len() {
        sys::exit(2);
    }
    for (i, a) in args.iter_mut().enumerate() {
        *a = arg(*argv.add(i));
    }
    sys::exit(run(&args[3..]))
}

unsafe fn arg<'a>(p: *const u8) -> &'a [u8] {
    let mut n = 0;
    while *p.add(n) != 0 {
        n += 1;
    }
    core::slice::from_raw_parts(p, n)
}

/// The namespace holder: fork, report the child's PID, and let the child wait forever.
fn hold() -> ! {
    let pid = sys::fork();
    if pid < 0 {
        sys::exit(1);
    }
    if pid > 0 {
        let mut line = Buf::<24>::default();
        line.push_i64(pid as i64).push(b"\n");
        sys::exit(if write_all(1, &[line.as_bytes()]) { 0 } else { 1 });
    }
    sys::setsid();
    sys::set_name(b"k3rs-holder\0");
    for fd in 0..3 {
        sys::close(fd);
    }
    loop {
        sys::ppoll(&mut [], -1);
    }
}

fn parse_int(s: &[u8]) -> i32 {
    let (neg, digits) = match s.strip_prefix(b"-") {
        Some(d) => (true, d),
        None => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return -1;
    }
    let mut v: i32 = 0;
    for d in digits {
        v = v.saturating_mul(10).saturating_add(i32::from(d - b'0'));
    }
    if neg {
        -v
    } else {
        v
    }
}

/// Writes every byte of the pieces, resuming after short writes; false on an error.
fn write_all(fd: i32, pieces: &[&[u8]]) -> bool {
    let mut iov: [sys::IoVec; 4] = core::array::from_fn(|_| sys::IoVec { base: core::ptr::null(), len: 0 });
    let mut n = 0;
    for p in pieces.iter().filter(|p| !p.is_empty()).take(4) {
        iov[n] = sys::IoVec { base: p.as_ptr(), len: p.len() };
        n += 1;
    }
    let mut first = 0;
    while first < n {
        let w = sys::writev(fd, &iov[first..n]);
        if w < 0 {
            if w == -sys::EINTR {
                continue;
            }
            return false;
        }
        let mut w = w as usize;
        while first < n && w >= iov[first].len {
            w -= iov[first].len;
            first += 1;
        }
        if first < n {
            iov[first].base = unsafe { iov[first].base.add(w) };
            iov[first].len -= w;
        }
    }
    true
}

fn send_frame(fd: i32, kind: u8, data: &[u8]) -> bool {
    let len = (data.len() as u32).to_be_bytes();
    write_all(fd, &[&[kind, len[0], len[1], len[2], len[3]], data])
}

const MAX_CLIENTS: usize = 16;

struct Stream {
    fd: i32,
    name: &'static [u8],
    kind: u8,
    lines: LineBuf,
}

struct Client {
    fd: i32,
    parser: FrameParser,
    sent_stdin: bool,
}

struct Monitor {
    log_fd: i32,
    streams: [Stream; 2],
    in_fd: i32,
    pty_fd: i32,
    clients: [Option<Client>; MAX_CLIENTS],
    stdin_once: bool,
}

fn log_line(log_fd: i32, stream: &[u8], tag: u8, text: &[u8]) {
    if log_fd < 0 {
        return;
    }
    let mut head: Buf<64> = Buf::default();
    head.push(rfc3339(sys::now_ns()).as_bytes()).push(b" ").push(stream).push(b" ").push(&[tag, b' ']);
    write_all(log_fd, &[head.as_bytes(), text, b"\n"]);
}

fn rfc3339(ns: i64) -> Buf<32> {
    logic::rfc3339_nano(ns)
}

impl Monitor {
    fn read_stream(&mut self, i: usize) {
        let s = &mut self.streams[i];
        let n = sys::read(s.fd, s.lines.space());
        if n <= 0 {
            if n == -sys::EINTR {
                return;
            }
            // EOF, or EIO once the pty's last slave is closed.
            self.close_stream(i);
            return;
        }
        let n = n as usize;
        let (kind, fresh) = (s.kind, s.lines.fresh(n));
        for slot in self.clients.iter_mut() {
            if let Some(c) = slot {
                if !send_frame(c.fd, kind, fresh) {
                    sys::close(c.fd);
                    *slot = None;
                }
            }
        }
        let (log_fd, name) = (self.log_fd, s.name);
        s.lines.commit(n, &mut |tag, text| log_line(log_fd, name, tag, text));
    }

    fn close_stream(&mut self, i: usize) {
        let (log_fd, s) = (self.log_fd, &mut self.streams[i]);
        let name = s.name;
        s.lines.flush(&mut |tag, text| log_line(log_fd, name, tag, text));
        if s.fd >= 0 {
            sys::close(s.fd);
            s.fd = -1;
        }
    }

    fn close_stdin(&mut self) {
        if self.in_fd >= 0 {
            sys::close(self.in_fd);
            self.in_fd = -1;
        }
    }

    fn drop_client(&mut self, i: usize) {
        if let Some(c) = self.clients[i].take() {
            sys::close(c.fd);
            if c.sent_stdin && self.stdin_once {
                self.close_stdin();
                self.stdin_once = false;
            }
        }
    }

    fn read_client(&mut self, i: usize) {
        let mut buf = [0u8; 4096];
        let Some(c) = self.clients[i].as_mut() else { return };
        let n = sys::read(c.fd, &mut buf);
        if n == -sys::EINTR {
            return;
        }
        if n <= 0 {
            self.drop_client(i);
            return;
        }
        let target = if self.pty_fd >= 0 { self.pty_fd } else { self.in_fd };
        let (pty_fd, mut close, mut sent) = (self.pty_fd, false, false);
        let ok = c.parser.feed(&buf[..n as usize], &mut |req| match req {
            Request::Stdin(data) => {
                sent = true;
                if target >= 0 {
                    write_all(target, &[data]);
                }
            }
            Request::Resize { cols, rows } if pty_fd >= 0 => sys::set_winsize(pty_fd, cols, rows),
            Request::Resize { .. } => {}
            Request::CloseStdin => close = true,
        });
        c.sent_stdin |= sent;
        if close {
            if self.pty_fd >= 0 {
                // EOF on a terminal is ^D.
                write_all(self.pty_fd, &[&[4]]);
            } else {
                self.close_stdin();
            }
        }
        if !ok {
            self.drop_client(i);
        }
    }
}

/// Copies `s` into a NUL-terminated path buffer.
fn path(s: &[u8], suffix: &[u8]) -> Buf<4096> {
    let mut b = Buf::default();
    b.push(s).push(suffix);
    b
}

fn oom_killed(file: &[u8]) -> bool {
    if file.is_empty() {
        return false;
    }
    let mut p = path(file, b"");
    let fd = sys::open(p.c_str(), sys::O_RDONLY | sys::O_CLOEXEC, 0);
    if fd < 0 {
        return false;
    }
    let mut buf = [0u8; 4096];
    let n = sys::read(fd, &mut buf);
    sys::close(fd);
    n > 0 && logic::oom_kills(&buf[..n as usize]) > 0
}

fn run(args: &[&[u8]]) -> i32 {
    let pid = parse_int(args[0]);
    if pid <= 0 {
        return 2;
    }
    let (out_fd, err_fd, in_fd, pty_fd, listen_fd) =
        (parse_int(args[1]), parse_int(args[2]), parse_int(args[3]), parse_int(args[4]), parse_int(args[5]));
    let (state_dir, log_path, oom_file) = (args[7], args[8], args[9]);

    // SIGCHLD through a signalfd, so waiting and reading share one poll.
    let sfd = sys::sigchld_fd();
    let log_fd =
        sys::open(path(log_path, b"").c_str(), sys::O_WRONLY | sys::O_CREAT | sys::O_APPEND | sys::O_CLOEXEC, 0o640);
    let tty = pty_fd >= 0;
    let mut m = Monitor {
        log_fd,
        streams: [
            Stream { fd: if tty { pty_fd } else { out_fd }, name: b"stdout", kind: 1, lines: LineBuf::new(tty) },
            Stream { fd: if tty { -1 } else { err_fd }, name: b"stderr", kind: 2, lines: LineBuf::new(false) },
        ],
        in_fd,
        pty_fd,
        clients: core::array::from_fn(|_| None),
        stdin_once: args[6] == b"1",
    };
    let mut status: Option<i32> = None;
    let mut drain_deadline = i64::MAX;
    loop {
        if status.is_some() && (m.streams.iter().all(|s| s.fd < 0) || sys::now_ns() > drain_deadline) {
            break;
        }
        // [signalfd, stdout, stderr, listener, clients...]
        let mut pfds: [sys::PollFd; 4 + MAX_CLIENTS] =
            core::array::from_fn(|_| sys::PollFd { fd: -1, events: 0, revents: 0 });
        pfds[0].fd = sfd;
        pfds[1].fd = m.streams[0].fd;
        pfds[2].fd = m.streams[1].fd;
        pfds[3].fd = if status.is_none() { listen_fd } else { -1 };
        for (i, c) in m.clients.iter().enumerate() {
            pfds[4 + i].fd = c.as_ref().map_or(-1, |c| c.fd);
        }
        for p in pfds.iter_mut() {
            p.events = sys::POLLIN;
        }
        let n = sys::ppoll(&mut pfds, if status.is_some() { 100 } else { -1 });
        if n < 0 {
            if n == -sys::EINTR {
                continue;
            }
            break;
        }
        // Reaped on every wakeup, not only on SIGCHLD: the container may have exited before
        // this process blocked the signal (it is started as soon as `create` reported).
        if status.is_none() || pfds[0].revents != 0 {
            let mut info = [0u8; 128];
            while sys::read(sfd, &mut info) > 0 {}
            let mut st = 0;
            loop {
                let r = sys::wait_any(&mut st);
                if r <= 0 {
                    break;
                }
                if r == pid as isize {
                    status = Some(st);
                    drain_deadline = sys::now_ns() + 2_000_000_000;
                }
            }
        }
        for i in 0..2 {
            if pfds[1 + i].fd >= 0 && pfds[1 + i].revents != 0 {
                m.read_stream(i);
            }
        }
        if pfds[3].fd >= 0 && pfds[3].revents & sys::POLLIN != 0 {
            let fd = sys::accept(listen_fd);
            if fd >= 0 {
                match m.clients.iter_mut().find(|c| c.is_none()) {
                    Some(slot) => *slot = Some(Client { fd, parser: FrameParser::default(), sent_stdin: false }),
                    None => sys::close(fd),
                }
            }
        }
        for i in 0..MAX_CLIENTS {
            if pfds[4 + i].fd >= 0 && pfds[4 + i].revents != 0 {
                m.read_client(i);
            }
        }
    }
    for i in 0..2 {
        m.close_stream(i);
    }
    let st = status.unwrap_or(-1);
    let (code, signal) = match (status, st & 0x7f) {
        (Some(_), 0) => ((st >> 8) & 0xff, 0),
        (Some(_), sig) if sig != 0x7f => (128 + sig, sig),
        _ => (255, 0),
    };
    let mut record: Buf<96> = Buf::default();
    record.push_i64(i64::from(code)).push(b" ").push_i64(i64::from(signal)).push(b" ");
    record.push(if oom_killed(oom_file) { b"1" } else { b"0" }).push(b" ").push_i64(sys::now_ns()).push(b"\n");
    let (mut tmp, mut done) = (path(state_dir, b"/exit.tmp"), path(state_dir, b"/exit"));
    let fd = sys::open(tmp.c_str(), sys::O_WRONLY | sys::O_CREAT | sys::O_TRUNC | sys::O_CLOEXEC, 0o644);
    if fd >= 0 {
        let ok = write_all(fd, &[record.as_bytes()]);
        sys::close(fd);
        if ok {
            sys::rename(tmp.c_str(), done.c_str());
        }
    }
    let frame = code.to_be_bytes();
    for slot in m.clients.iter_mut() {
        if let Some(c) = slot.take() {
            send_frame(c.fd, 3, &frame);
            sys::close(c.fd);
        }
    }
    0
}
