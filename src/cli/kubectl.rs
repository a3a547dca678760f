//! `k3rs kubectl ARGS`, and `kubectl ARGS` through a link named `kubectl` to the k3rs binary
//! (argv[0], as k3s does it): runs a kubectl with the arguments. k3rs bundles none yet, so it
//! is the first `kubectl` on PATH that is not k3rs itself; without one the error says how to
//! get one. As in k3s, KUBECONFIG defaults to the admin kubeconfig that `k3rs server` writes
//! (`--write-kubeconfig` as configured in the environment or the config files, else
//! `/etc/k3rs/k3rs.yaml`) when it is readable, KUBECONFIG is unset and no `--kubeconfig` is
//! given.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::config;

/// kubectl's arguments when this process is a kubectl invocation: `kubectl ARGS` through a
/// link, or `k3rs kubectl ARGS`.
pub fn invocation(args: &[OsString]) -> Option<&[OsString]> {
    let name = args.first().map(|a| Path::new(a).file_name().unwrap_or(a.as_os_str()));
    if name == Some(OsStr::new("kubectl")) {
        return Some(&args[1..]);
    }
    if args.get(1).is_some_and(|a| a == "kubectl") {
        return Some(&args[2..]);
    }
    None
}

/// Runs kubectl with `args` in place of this process; returns only on failure.
pub fn run(args: &[OsString]) -> ExitCode {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let me = std::fs::metadata("/proc/self/exe").ok().map(|m| (m.dev(), m.ino()));
    let Some(kubectl) = find_kubectl(&path, me) else {
        eprintln!(
            "k3rs: error: no kubectl to run: this k3rs has none bundled and there is none on PATH; install one \
             (https://kubernetes.io/docs/tasks/tools/) and put it on PATH"
        );
        return ExitCode::from(1);
    };
    let mut cmd = std::process::Command::new(&kubectl);
    cmd.arg0("kubectl").args(args);
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    if let Some(kubeconfig) = default_kubeconfig(args, &config::process_env(), &cwd, std::env::var_os("KUBECONFIG")) {
        cmd.env("KUBECONFIG", kubeconfig);
    }
    let err = cmd.exec();
    eprintln!("k3rs: error: cannot run {}: {err}", kubectl.display());
    ExitCode::from(1)
}

/// The first executable `kubectl` in `path` that is not the file `me` (device and inode of
/// this binary: a `kubectl` link to k3rs is passed over).
pub fn find_kubectl(path: &OsStr, me: Option<(u64, u64)>) -> Option<PathBuf> {
    std::env::split_paths(path).filter(|dir| !dir.as_os_str().is_empty()).map(|dir| dir.join("kubectl")).find(|p| {
        std::fs::metadata(p)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0 && Some((m.dev(), m.ino())) != me)
    })
}

/// The KUBECONFIG to give kubectl: the configured admin kubeconfig, when KUBECONFIG is unset
/// (`current`), no `--kubeconfig` is among `args` and the file is readable.
pub fn default_kubeconfig(
    args: &[OsString],
    env: &config::Env,
    cwd: &Path,
    current: Option<OsString>,
) -> Option<PathBuf> {
    if current.is_some_and(|v| !v.is_empty()) {
        return None;
    }
    // Flags after `--` belong to the command kubectl runs (exec), not to kubectl.
    let flags = args.iter().take_while(|a| *a != "--");
    if flags.map(|a| a.to_string_lossy()).any(|a| a == "--kubeconfig" || a.starts_with("--kubeconfig=")) {
        return None;
    }
    let path = config::configured_kubeconfig(env, cwd);
    std::fs::File::open(&path).is_ok().then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn kubectl_is_the_link_name_or_the_first_argument() {
        assert_eq!(invocation(&os(&["/usr/local/bin/kubectl", "get", "pods"])), Some(&os(&["get", "pods"])[..]));
        assert_eq!(invocation(&os(&["kubectl"])), Some(&os(&[])[..]));
        assert_eq!(invocation(&os(&["k3rs", "kubectl", "version"])), Some(&os(&["version"])[..]));
        assert_eq!(invocation(&os(&["k3rs", "server", "kubectl"])), None);
        assert_eq!(invocation(&os(&["/bin/kubectl-like", "get"])), None);
        assert_eq!(invocation(&os(&[])), None);
    }

    fn executable(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn the_kubectl_run_is_the_first_on_path_that_is_not_k3rs() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c, d) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"), dir.path().join("d"));
        for x in [&a, &b, &c, &d] {
            std::fs::create_dir(x).unwrap();
        }
        // a: k3rs and a kubectl link to it; b: a kubectl that is not executable; c: a kubectl.
        executable(&a.join("k3rs"), "k3rs");
        std::os::unix::fs::symlink("k3rs", a.join("kubectl")).unwrap();
        std::fs::write(b.join("kubectl"), "not executable").unwrap();
        executable(&c.join("kubectl"), "kubectl");
        let m = std::fs::metadata(a.join("k3rs")).unwrap();
        let me = Some((m.dev(), m.ino()));
        let path = std::env::join_paths([&d, &a, &b, &c]).unwrap();
        assert_eq!(find_kubectl(&path, me), Some(c.join("kubectl")));
        // A hard link to k3rs is k3rs too.
        std::fs::remove_file(c.join("kubectl")).unwrap();
        std::fs::hard_link(a.join("k3rs"), c.join("kubectl")).unwrap();
        assert_eq!(find_kubectl(&path, me), None);
        // Not this k3rs: the link is a kubectl like any other.
        assert_eq!(find_kubectl(&path, None), Some(a.join("kubectl")));
    }

    #[test]
    fn kubeconfig_defaults_to_the_readable_admin_kubeconfig_unless_one_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let admin = dir.path().join("k3rs.yaml");
        let env: config::Env = [("K3RS_WRITE_KUBECONFIG".to_string(), OsString::from(&admin))].into_iter().collect();
        let cwd = Path::new("/");
        let get = os(&["get", "pods"]);
        // Not there (yet): kubectl's own default.
        assert_eq!(default_kubeconfig(&get, &env, cwd, None), None);
        std::fs::write(&admin, "apiVersion: v1\n").unwrap();
        assert_eq!(default_kubeconfig(&get, &env, cwd, None), Some(admin.clone()));
        assert_eq!(default_kubeconfig(&get, &env, cwd, Some(OsString::new())), Some(admin.clone()));
        assert_eq!(default_kubeconfig(&get, &env, cwd, Some("/mine".into())), None);
        assert_eq!(default_kubeconfig(&os(&["--kubeconfig", "/x", "get"]), &env, cwd, None), None);
        assert_eq!(default_kubeconfig(&os(&["get", "--kubeconfig=/x"]), &env, cwd, None), None);
        let exec = os(&["exec", "p", "--", "tool", "--kubeconfig=/x"]);
        assert_eq!(default_kubeconfig(&exec, &env, cwd, None), Some(admin));
    }
}
