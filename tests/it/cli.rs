//! The `k3rs` command line as users meet it: the built binary, its exit codes and messages.
//! Every bad value, whatever its source, must stop `k3rs server` with exit code 2 and one
//! line naming the source and the key, before anything is written.

use std::path::PathBuf;
use std::process::{Command, Output};

fn k3rs() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_k3rs"));
    // The tests control every K3RS_ variable themselves.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("K3RS_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        Sandbox { dir: tempfile::tempdir().expect("tempdir") }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, text).expect("write");
        path
    }

    /// `k3rs server` with its own config file and data dir, so the host's /etc/k3rs and
    /// /var/lib/k3rs are never read or touched.
    fn server(&self, args: &[&str]) -> Command {
        let config = self.path("config.yaml");
        if !config.exists() {
            self.write("config.yaml", "");
        }
        let mut cmd = k3rs();
        cmd.arg("server")
            .arg("--disable-agent")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(self.path("data"))
            .args(args);
        cmd
    }

    fn data_dir_untouched(&self) -> bool {
        !self.path("data").exists()
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run k3rs")
}

/// Asserts exit code 2 and a single stderr line starting with `k3rs: error: <prefix>`.
#[track_caller]
fn assert_usage_error(out: &Output, prefix: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    let want = format!("k3rs: error: {prefix}");
    assert!(stderr.starts_with(&want), "{stderr:?} does not start with {want:?}");
    assert!(out.stdout.is_empty(), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    stderr
}

#[test]
fn version_prints_version_commit_and_build_date() {
    // The commit this test was built from (build.rs runs again whenever HEAD moves).
    let commit = Command::new("git")
        .args(["rev-parse", "--short=8", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(|| "unknown".to_string(), |o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let first = format!("k3rs version v{} ({commit})", env!("CARGO_PKG_VERSION"));
    let out = run(k3rs().arg("--version"));
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0], first);
    let date = lines[1].strip_prefix("build date ").unwrap_or_else(|| panic!("{text}"));
    assert!(time::OffsetDateTime::parse(date, &time::format_description::well_known::Rfc3339).is_ok(), "{date}");
    assert!(date.ends_with('Z') && date.len() == 20, "{date}");
    assert!(lines[2].starts_with("rustc "), "{text}");
    // -V: the first line only.
    let out = run(k3rs().arg("-V"));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), first);
    let out = run(k3rs().args(["server", "--version"]));
    assert!(out.status.success());
}

/// A directory with a stand-in kubectl that prints its name, arguments and KUBECONFIG.
fn fake_kubectl(sandbox: &Sandbox) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = sandbox.write("fake/kubectl", "#!/bin/sh\necho \"fake $0 $* KUBECONFIG=${KUBECONFIG-unset}\"\nexit 7\n");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    sandbox.path("fake")
}

#[test]
fn kubectl_runs_the_kubectl_on_path_with_the_admin_kubeconfig() {
    let sb = Sandbox::new();
    let fake = fake_kubectl(&sb);
    let admin = sb.write("etc/k3rs.yaml", "apiVersion: v1\n");
    // `k3rs kubectl`: arguments pass through, KUBECONFIG defaults to the configured admin
    // kubeconfig, and the exit code is kubectl's.
    let out = run(k3rs()
        .args(["kubectl", "get", "pods", "-A"])
        .env("PATH", &fake)
        .env_remove("KUBECONFIG")
        .env("K3RS_WRITE_KUBECONFIG", &admin));
    assert_eq!(out.status.code(), Some(7));
    let want = format!("fake {} get pods -A KUBECONFIG={}\n", fake.join("kubectl").display(), admin.display());
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    // A KUBECONFIG of the caller's stays.
    let out = run(k3rs().args(["kubectl", "get"]).env("PATH", &fake).env("KUBECONFIG", "/mine"));
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("get KUBECONFIG=/mine\n"));

    // A `kubectl` link to k3rs is kubectl too, and passes itself over on PATH.
    let links = sb.path("bin");
    std::fs::create_dir_all(&links).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_k3rs"), links.join("kubectl")).unwrap();
    let path = std::env::join_paths([&links, &fake]).unwrap();
    let out = run(Command::new(links.join("kubectl"))
        .args(["version", "--client"])
        .env("PATH", &path)
        .env("K3RS_WRITE_KUBECONFIG", sb.path("missing.yaml")));
    assert_eq!(out.status.code(), Some(7));
    let want = format!("fake {} version --client KUBECONFIG=unset\n", fake.join("kubectl").display());
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);

    // No other kubectl: one line saying how to get one.
    let out = run(Command::new(links.join("kubectl")).arg("get").env("PATH", &links));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("k3rs: error: no kubectl to run") && stderr.contains("kubernetes.io"), "{stderr}");
}

#[test]
fn help_lists_the_server_command_and_its_flags() {
    let out = run(k3rs().arg("--help"));
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("server") && help.contains("kubectl"), "{help}");

    let out = run(k3rs().args(["server", "--help"]));
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--data-dir",
        "--https-listen-port",
        "--bind-address",
        "--node-ip",
        "--node-name",
        "--write-kubeconfig",
        "--write-kubeconfig-mode",
        "--cluster-cidr",
        "--service-cidr",
        "--cluster-dns",
        "--cluster-domain",
        "--disable",
        "--datastore-endpoint",
        "--datastore-cafile",
        "--datastore-certfile",
        "--datastore-keyfile",
        "--disable-agent",
        "--debug",
        "--config",
    ] {
        assert!(help.contains(flag), "server --help lacks {flag}");
    }
    assert!(help.contains("K3RS_"), "server --help does not mention the environment");
}

#[test]
fn no_command_is_a_usage_error() {
    let out = run(&mut k3rs());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server"));
}

#[test]
fn bad_flag_values_are_one_line_naming_the_key() {
    let cases: &[(&[&str], &str)] = &[
        (&["--bind-address", "localhost"], "command line: bind-address: \"localhost\" is not an IP address"),
        (&["--node-ip", "10.0.0"], "command line: node-ip: "),
        (&["--https-listen-port", "70000"], "command line: https-listen-port: "),
        (&["--cluster-cidr", "10.42.0.0"], "command line: cluster-cidr: "),
        (&["--service-cidr", "10.42.0.0/16"], "command line: service-cidr: 10.42.0.0/16 overlaps cluster-cidr"),
        (&["--cluster-dns", "10.42.0.10"], "command line: cluster-dns: 10.42.0.10 is outside service-cidr"),
        (&["--write-kubeconfig-mode", "888"], "command line: write-kubeconfig-mode: "),
        (&["--disable", "etcd-api,helm-controller"], "command line: disable: unknown component \"helm-controller\""),
        (&["--datastore-endpoint", "mysql://root@tcp(127.0.0.1:3306)/k3s"], "command line: datastore-endpoint: "),
        (&["--node-name", "Not_Valid"], "command line: node-name: "),
        (&["--datastore-cafile", "/ca.pem"], "command line: datastore-cafile: is only used with an https://"),
        (
            &["--datastore-endpoint", "https://127.0.0.1:2379"],
            "command line: datastore-endpoint: https:// endpoints need",
        ),
        (&["--cluster-domain=-bad"], "command line: cluster-domain: "),
        (&["--no-such-flag"], "command line: --no-such-flag: unknown flag"),
        (&["extra"], "command line: extra: unexpected argument"),
    ];
    for (args, prefix) in cases {
        let sb = Sandbox::new();
        let out = run(&mut sb.server(args));
        assert_usage_error(&out, prefix);
        assert!(sb.data_dir_untouched(), "{args:?} wrote to the data dir");
    }
}

#[test]
fn bad_environment_values_name_the_variable() {
    let cases: &[(&str, &str, &str)] = &[
        ("K3RS_CLUSTER_CIDR", "10.42.0.0/33", "K3RS_CLUSTER_CIDR: cluster-cidr: "),
        ("K3RS_HTTPS_LISTEN_PORT", "0", "K3RS_HTTPS_LISTEN_PORT: https-listen-port: "),
        ("K3RS_DEBUG", "maybe", "K3RS_DEBUG: debug: "),
        ("K3RS_DISABLE", "helm-controller", "K3RS_DISABLE: disable: unknown component"),
        ("K3RS_DATASTORE_ENDPOINT", "http://127.0.0.1", "K3RS_DATASTORE_ENDPOINT: datastore-endpoint: "),
    ];
    for (var, value, prefix) in cases {
        let sb = Sandbox::new();
        let out = run(sb.server(&[]).env(var, value));
        assert_usage_error(&out, prefix);
        assert!(sb.data_dir_untouched());
    }
}

#[test]
fn bad_config_file_values_name_the_file_and_key() {
    let cases: &[(&str, &str)] = &[
        ("https-listen-port: 99999\n", "https-listen-port: "),
        ("bind-address: [0.0.0.0]\n", "bind-address: expected a single value, found a list"),
        ("datadir: /srv\n", "datadir: unknown key (did you mean data-dir?)"),
        ("write-kubeconfig-mode: rw\n", "write-kubeconfig-mode: "),
        ("service-cidr: 10.43.0.0/16\ncluster-dns: 10.43.0.1\n", "cluster-dns: 10.43.0.1 is reserved"),
    ];
    for (text, key_part) in cases {
        let sb = Sandbox::new();
        let config = sb.write("config.yaml", text);
        let out = run(&mut sb.server(&[]));
        assert_usage_error(&out, &format!("{}: {key_part}", config.display()));
        assert!(sb.data_dir_untouched());
    }
}

#[test]
fn a_dropin_is_checked_even_when_the_command_line_overrides_it() {
    let sb = Sandbox::new();
    sb.write("config.yaml", "https-listen-port: 6443\n");
    let dropin = sb.write("config.yaml.d/10-port.yaml", "https-listen-port: nope\n");
    let out = run(&mut sb.server(&["--https-listen-port", "7443"]));
    assert_usage_error(&out, &format!("{}: https-listen-port: ", dropin.display()));
}

#[test]
fn malformed_yaml_is_one_line_naming_the_file() {
    let sb = Sandbox::new();
    let config = sb.write("config.yaml", "data-dir: [\n  unclosed\n");
    let out = run(&mut sb.server(&[]));
    assert_usage_error(&out, &format!("{}: ", config.display()));
}

#[test]
fn a_named_config_file_must_exist() {
    let sb = Sandbox::new();
    let missing = sb.path("nope.yaml");
    let out = run(k3rs().arg("server").arg("--config").arg(&missing));
    assert_usage_error(&out, &format!("command line: config: {}: no such file", missing.display()));
    let out = run(k3rs().arg("server").env("K3RS_CONFIG_FILE", &missing));
    assert_usage_error(&out, "K3RS_CONFIG_FILE: config: ");
}

#[test]
fn k3rs_config_file_names_the_config_file() {
    let sb = Sandbox::new();
    let config = sb.write("etc/k3rs.yaml", "cluster-domain: Bad_Domain\n");
    let out = run(k3rs().arg("server").env("K3RS_CONFIG_FILE", &config));
    assert_usage_error(&out, &format!("{}: cluster-domain: ", config.display()));
}
