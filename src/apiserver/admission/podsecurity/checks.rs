//! The Pod Security Standards' checks, each with the versions its behaviour changed in, and
//! the evaluation of a pod (or a pod template) against a level as of a version.
//!
//! The reasons and details are the words clients see in PodSecurity's errors and warnings,
//! so they are upstream's to the letter. Checks run in upstream's order: baseline checks
//! by name, then restricted ones by name; a restricted check may stand in for a baseline
//! one (`overrides`) from the version it appears in.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use k8s_openapi::api::core::v1::{ContainerPort, PodSpec, SecurityContext};

use super::policy::{Level, LevelVersion, Version};
use crate::domain::quote::go_quote;

/// The newest policy: k3rs serves Kubernetes 1.33, and a version newer than the server's
/// is judged by the server's newest checks, as upstream does.
pub const NEWEST_MINOR: u64 = 33;

/// A pod's annotations (or its template's), which some checks read.
pub type Annotations = BTreeMap<String, String>;

/// Why a pod fails one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub reason: String,
    pub detail: String,
}

fn violation(reason: impl Into<String>, detail: impl Into<String>) -> Option<Violation> {
    Some(Violation { reason: reason.into(), detail: detail.into() })
}

type CheckFn = fn(&Annotations, &PodSpec) -> Option<Violation>;

/// One behaviour of a check, from a version on.
struct Since {
    minor: u64,
    check: CheckFn,
    /// Baseline checks this one replaces at the restricted level.
    overrides: &'static [&'static str],
}

struct Check {
    id: &'static str,
    level: Level,
    /// Oldest first.
    versions: &'static [Since],
}

const fn since(minor: u64, check: CheckFn) -> Since {
    Since { minor, check, overrides: &[] }
}

/// Every check, in the order upstream runs them.
static CHECKS: &[Check] = &[
    Check { id: "appArmorProfile", level: Level::Baseline, versions: &[since(0, app_armor_profile)] },
    Check { id: "capabilities_baseline", level: Level::Baseline, versions: &[since(0, capabilities_baseline)] },
    Check { id: "hostNamespaces", level: Level::Baseline, versions: &[since(0, host_namespaces)] },
    Check { id: "hostPathVolumes", level: Level::Baseline, versions: &[since(0, host_path_volumes)] },
    Check { id: "hostPorts", level: Level::Baseline, versions: &[since(0, host_ports)] },
    Check { id: "privileged", level: Level::Baseline, versions: &[since(0, privileged)] },
    Check { id: "procMount", level: Level::Baseline, versions: &[since(0, proc_mount)] },
    Check {
        id: "seLinuxOptions",
        level: Level::Baseline,
        versions: &[since(0, se_linux_options_1_0), since(31, se_linux_options_1_31)],
    },
    Check {
        id: "seccompProfile_baseline",
        level: Level::Baseline,
        versions: &[since(0, seccomp_annotations), since(19, seccomp_baseline)],
    },
    Check {
        id: "sysctls",
        level: Level::Baseline,
        versions: &[since(0, sysctls_1_0), since(27, sysctls_1_27), since(29, sysctls_1_29), since(32, sysctls_1_32)],
    },
    Check { id: "windowsHostProcess", level: Level::Baseline, versions: &[since(0, windows_host_process)] },
    Check {
        id: "allowPrivilegeEscalation",
        level: Level::Restricted,
        versions: &[since(8, allow_privilege_escalation), since(25, allow_privilege_escalation_1_25)],
    },
    Check {
        id: "capabilities_restricted",
        level: Level::Restricted,
        versions: &[
            Since { minor: 22, check: capabilities_restricted, overrides: &["capabilities_baseline"] },
            Since { minor: 25, check: capabilities_restricted_1_25, overrides: &["capabilities_baseline"] },
        ],
    },
    Check {
        id: "restrictedVolumes",
        level: Level::Restricted,
        versions: &[Since { minor: 0, check: restricted_volumes, overrides: &["hostPathVolumes"] }],
    },
    Check { id: "runAsNonRoot", level: Level::Restricted, versions: &[since(0, run_as_non_root)] },
    Check { id: "runAsUser", level: Level::Restricted, versions: &[since(23, run_as_user)] },
    Check {
        id: "seccompProfile_restricted",
        level: Level::Restricted,
        versions: &[
            Since { minor: 19, check: seccomp_restricted, overrides: &["seccompProfile_baseline"] },
            Since { minor: 25, check: seccomp_restricted_1_25, overrides: &["seccompProfile_baseline"] },
        ],
    },
];

/// The checks' violations of a pod at `lv` (none at `privileged`), in upstream's order.
pub fn evaluate(lv: LevelVersion, annotations: &Annotations, spec: &PodSpec) -> Vec<Violation> {
    if lv.level == Level::Privileged {
        return Vec::new();
    }
    let minor = match lv.version {
        Version::V1(minor) => minor.min(NEWEST_MINOR),
        Version::Latest => NEWEST_MINOR,
    };
    let applies = |c: &Check| c.level == Level::Baseline || lv.level == Level::Restricted;
    let current = |c: &'static Check| c.versions.iter().rev().find(|s| s.minor <= minor);
    let overridden: HashSet<&str> = CHECKS
        .iter()
        .filter(|c| c.level == Level::Restricted && applies(c))
        .filter_map(current)
        .flat_map(|s| s.overrides.iter().copied())
        .collect();
    CHECKS
        .iter()
        .filter(|c| applies(c) && !overridden.contains(c.id))
        .filter_map(current)
        .filter_map(|s| (s.check)(annotations, spec))
        .collect()
}

/// Upstream's aggregate of failed checks.
pub struct Verdict(pub Vec<Violation>);

impl Verdict {
    pub fn allowed(&self) -> bool {
        self.0.is_empty()
    }

    /// The reasons alone: `allowPrivilegeEscalation != false, runAsNonRoot != true`.
    pub fn reasons(&self) -> String {
        self.0.iter().map(|v| v.reason.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// Each reason with its detail in parentheses, as errors and warnings say them.
    pub fn details(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|v| if v.detail.is_empty() { v.reason.clone() } else { format!("{} ({})", v.reason, v.detail) })
            .collect();
        parts.join(", ")
    }
}

// --- Helpers: the phrasing upstream's messages share. ---

/// `"a", "b"`.
fn join_quote<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let inner: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    format!("\"{}\"", inner.join("\", \""))
}

fn pluralize(singular: &'static str, plural: &'static str, n: usize) -> &'static str {
    if n == 1 {
        singular
    } else {
        plural
    }
}

/// `container "a"` or `containers "a", "b"`.
fn containers_named(names: &[&str]) -> String {
    format!("{} {}", pluralize("container", "containers", names.len()), join_quote(names))
}

/// What the checks read of a container, init container or ephemeral container.
struct Ctr<'a> {
    name: &'a str,
    security: Option<&'a SecurityContext>,
    ports: &'a [ContainerPort],
}

/// Init containers, containers, then ephemeral containers, as upstream visits them.
fn containers(spec: &PodSpec) -> impl Iterator<Item = Ctr<'_>> {
    let regular = spec.init_containers.iter().flatten().chain(spec.containers.iter()).map(|c| Ctr {
        name: &c.name,
        security: c.security_context.as_ref(),
        ports: c.ports.as_deref().unwrap_or_default(),
    });
    let ephemeral = spec.ephemeral_containers.iter().flatten().map(|c| Ctr {
        name: &c.name,
        security: c.security_context.as_ref(),
        ports: c.ports.as_deref().unwrap_or_default(),
    });
    regular.chain(ephemeral)
}

/// Pods declared to run on Windows pass some restricted checks from 1.25 on: the fields
/// those checks want cannot be set for Windows.
fn is_windows(spec: &PodSpec) -> bool {
    spec.os.as_ref().is_some_and(|os| os.name == "windows")
}

/// `pod` and/or `containers "a", "b"`, joined with " and ": who set something forbidden.
fn setters(pod: bool, containers: &[&str]) -> String {
    let mut who = Vec::new();
    if pod {
        who.push("pod".to_string());
    }
    if !containers.is_empty() {
        who.push(containers_named(containers));
    }
    who.join(" and ")
}

// --- Baseline. ---

/// AppArmor: the profile type may only be `RuntimeDefault` or `Localhost`, and the beta
/// annotations only `runtime/default`, `localhost/*` or empty.
fn app_armor_profile(annotations: &Annotations, spec: &PodSpec) -> Option<Violation> {
    let allowed_type = |t: &str| matches!(t, "RuntimeDefault" | "Localhost");
    let mut bad_values = BTreeSet::new();
    let pod_profile = spec.security_context.as_ref().and_then(|sc| sc.app_armor_profile.as_ref());
    let pod_bad = pod_profile.is_some_and(|p| !allowed_type(&p.type_));
    if let Some(p) = pod_profile.filter(|_| pod_bad) {
        bad_values.insert(p.type_.clone());
    }
    let mut bad_containers = Vec::new();
    for c in containers(spec) {
        if let Some(p) = c.security.and_then(|sc| sc.app_armor_profile.as_ref()) {
            if !allowed_type(&p.type_) {
                bad_containers.push(c.name);
                bad_values.insert(p.type_.clone());
            }
        }
    }
    let mut who = Vec::new();
    if pod_bad {
        who.push("pod".to_string());
    }
    if !bad_containers.is_empty() {
        who.push(containers_named(&bad_containers));
    }
    let forbidden_annotations: Vec<String> = annotations
        .iter()
        .filter(|(k, v)| {
            k.starts_with("container.apparmor.security.beta.kubernetes.io/")
                && !(v.is_empty() || v.as_str() == "runtime/default" || v.starts_with("localhost/"))
        })
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    let mut values: Vec<String> = bad_values.into_iter().collect();
    if !forbidden_annotations.is_empty() {
        who.push(pluralize("annotation", "annotations", forbidden_annotations.len()).to_string());
        values.extend(forbidden_annotations);
    }
    if who.is_empty() {
        return None;
    }
    violation(
        pluralize("forbidden AppArmor profile", "forbidden AppArmor profiles", values.len()),
        format!("{} must not set AppArmor profile type to {}", who.join(" and "), join_quote(&values)),
    )
}

/// Capabilities beyond the container runtime's default set may not be added.
fn capabilities_baseline(_: &Annotations, spec: &PodSpec) -> Option<Violation> {
    const DEFAULT_SET: &[&str] = &[
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    ];
    let mut bad_containers = Vec::new();
    let mut added = BTreeSet::new();
    for c in containers(spec) {
        let add = c.security.and_then(|sc| sc.capabilities.as_ref()).and_then(|caps| caps.add.as_ref());
        let mut valid = true;
        for cap in add.into_iter().flatten() {
            if !DEFAULT_SET.contains(&cap.as_str()) {
                valid = false;
                added.insert(cap.as_str());
            }
        }
        if !valid {
            bad_containers.push(c.name);
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    let added: Vec<&str> = added.into_iter().collect();
    violation(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_named(&bad_containers),
            join_quote(&added)
        ),
    )
}

fn host_namespaces(_: &Annotations, spec: &PodSpec) -> Option<Violation> {
    let shared: Vec<&str> =
        [(spec.host_network, "hostNetwork=true"), (spec.host_pid, "hostPID=true"), (spec.host_ipc, "hostIPC=true")]
            .into_iter()
            .filter(|(on, _)| *on == Some(true))
            .map(|(_, what)| what)
            .collect();
    if shared.is_empty() {
        return None;
    }
    violation("host namespaces", shared.join(", "))
}

fn host_path_volumes(_: &Annotations, spec: &PodSpec) -> Option<Violation> {
    let names: Vec<&str> =
        spec.volumes.iter().flatten().filter(|v| v.host_path.is_some()).map(|v| v.name.as_str()).collect();
    if names.is_empty() {
        return None;
    }
    violation("hostPath volumes", format!("{} {}", pluralize("volume", "volumes", names.len()), join_quote(&names)))
}

fn host_ports(_: &Annotations, spec: &PodSpec) -> Option<Violation> {
    let mut bad_containers = Vec::new();
    // Sorted as strings, as upstream's string set sorts them.
    let mut ports = BTreeSet::new();
    for c in containers(spec) {
        let mut valid = true;
        for p in c.ports {
            if let Some(host_port) = p.host_port.filter(|hp| *hp != 0) {
                valid = false;
                ports.insert(host_port.to_string());
            }
        }
        if !valid {
            bad_containers.push(c.name);
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    let ports: Vec<String> = ports.into_iter().collect();
    violation(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_named(&bad_containers),
            pluralize("uses", "use", bad_containers.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.join(", ")
        ),
    )
}

fn privileged(_: &Annotations, spec: &PodSpec) -> Option<Violation> {
    let bad: Vec<&str> =
        containers(spec).filter(|c| c.security.and_then(|sc| sc.privileged) == Some(true)).map(|c| c.name).collect();
    if bad.is_empty() {
        return None;
    }
    violation("privileged", format!("{} must not set securityContext.privileged=true", containers_named(&bad)))
}

/// Only the default /proc masks. (Upstream 1.33 relaxes this for pods in a user namespace
/// only behind an alpha feature gate that is off by default.)
fn proc_mount(_: &Annotations, spec: &PodSpec) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for c in containers(spec) {
        if let Some(t) = c.security.and_then(|sc| sc.proc_mount.as_deref()).filter(|t| *t != "Default") {
            bad.push(c.name);
            types.insert(t);
        }
    }
    if bad.is_empty() {
        return None;
    }
    let types: Vec<&str> = types.into_iter().collect();
    violation(
        "procMount",
        format!("{} must not set securityContext.procMount to {}", containers_named(&bad), join_quote(&types)),
    )
}

fn se_linux_options_1_0(_: &Annotations, spec: &PodSpec) -> Option<Violation> {
    se_linux_options(spec, &["", "container_t", "container_init_t", "container_kvm_t"])
}

fn se_linux_options_1_31(_: &Annotations, spec: &PodSpec) -> Option<Violation> {
    se_linux_options(spec, &["", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"])
}

/// SELinux: only the container types, and no user or role.
fn se_linux_options(spec: &PodSpec, allowed_types: &[&str]) -> Option<Violation> {
    let mut bad_types = BTreeSet::new();
    let (mut set_user, mut set_role) = (false, false);
    let mut valid = |o: &k8s_openapi::api::core::v1::SELinuxOptions| {
        let mut ok = true;
        let t = o.type_.as_deref().unwrap_or("");
        if !allowed_types.contains(&t) {
            ok = false;
            bad_types.insert(t.to_string());
        }
        if o.user.as_deref().is_some_and(|u| !u.is_empty()) {
            ok = false;
            set_user = true;
        }
        if o.role.as_deref().is_some_and(|r| !r.is_empty()) {
            ok = false;
            set_role = true;
        }
        ok
    };
    let pod_bad = spec.security_context.as_ref().and_then(|sc| sc.se_linux_options.as_ref()).is_some_and(|o| !valid(o));
    let mut bad_containers = Vec::new();
    for c in containers(spec) {
        if let Some(o) = c.security.and_then(|sc| sc.se_linux_options.as_ref()) {
            if !valid(o) {
                bad_containers.push(c.name);
            }
        }
    }
    if !pod_bad && bad_containers.is_empty() {
        return None;
    }
    let mut what = Vec::new();
    if !bad_types.is_empty() {
        let types: Vec<String> = bad_types.into_iter().collect();
        what.push(format!("{} {}", pluralize("type", "types", types.len()), join_quote(&types)));
    }
    if set_user {
        what.push("user may not be set".to_string());
    }
    if set_role {
        what.push("role may not be set".to_string());
    }
    violation(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters(pod_bad, &bad_containers),
            what.join("; ")
        ),
    )
}

fn valid_seccomp_type(t: &str) -> bool {
    matches!(t, "Localhost" | "RuntimeDefault")
}

/// Before 1.19 seccomp was set by annotations: only the runtime's default or a local
/// profile.
fn seccomp_annotations(annotations: &Annotations, spec: &PodSpec) -> Option<Violation> {
    const POD: &str = "seccomp.security.alpha.kubernetes.io/pod";
    const CONTAINER_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";
    let valid = |v: &str| v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/");
    let mut forbidden = BTreeSet::new();
    if let Some(v) = annotations.get(POD).filter(|v| !valid(v)) {
        forbidden.insert(format!("{POD}={}", go_quote(v)));
    }
    for c in containers(spec) {
        let key = format!("{CONTAINER_PREFIX}{}", c.name);
        if let Some(v) = annotations.get(&key).filter(|v| !valid(v)) {
            forbidden.insert(format!("{key}={}", go_quote(v)));
        }
    }
    if forbidden.is_empty() {
        return None;
    }
    let list: Vec<String> = forbidden.into_iter().collect();
    violation(
        "seccompProfile",
        format!("forbidden {} {}", pluralize("annotation", "annotations", list.len()), list.join(", ")),
    )
}

/// From 1.19 the profile type, where set, may only be `RuntimeDefault` or `Localhost`.
fn seccomp_baseline(_: &Annotations, spec: &PodSpec) -> Option<Violation> {
    seccomp(spec, false)
}

/// Seccomp: a bad type is refused wherever it is set; with `required`, each container
/// must also have a good one, of its own or from the pod.
fn seccomp(spec: &PodSpec, required: bool) -> Option<Violation> {
    let mut bad_values = BTreeSet::new();
    let pod_profile = spec.security_context.as_ref().and_then(|sc| sc.seccomp_profile.as_ref());
    let pod_bad = pod_profile.is_some_and(|p| !valid_seccomp_type(&p.type_));
    let pod_set = pod_profile.is_some() && !pod_bad;
    if let Some(p) = pod_profile.filter(|_| pod_bad) {
        bad_values.insert(p.type_.as_str());
    }
    let (mut explicit, mut implicit) = (Vec::new(), Vec::new());
    for c in containers(spec) {
        match c.security.and_then(|sc| sc.seccomp_profile.as_ref()) {
            Some(p) if !valid_seccomp_type(&p.type_) => {
                explicit.push(c.name);
                bad_values.insert(p.type_.as_str());
            }
            Some(_) => {}
            None if !pod_set => implicit.push(c.name),
            None => {}
        }
    }
    if pod_bad || !explicit.is_empty() {
        let values: Vec<&str> = bad_values.into_iter().collect();
        return violation(
            "seccompProfile",
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                setters(pod_bad, &explicit),
                join_quote(&values)
            ),
        );
    }
    if required && !implicit.is_empty() {
        return violation(
            "seccompProfile",
            format!(
                "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                containers_named(&implicit)
            ),
        );
    }
    None
}

const SAFE_SYSCTLS_1_0: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
];
const SAFE_SYSCTLS_1_27: &[&str] = &["net.ipv4.ip_local_reserved_ports"];
const SAFE_SYSCTLS_1_29: &[&str] = &[
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
const SAFE_SYSCTLS_1_32: &[&str] = &["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"];

fn sysctls_1_0(_: &Annotations, spec: &PodSpec) -> Option<Violation> {
    sysctls(spec, &[SAFE_SYSCTLS_1_0])
}

fn sysctls_1_27(_: &Annotations, spec: &PodSpec) -> Option<Violation> {
    sysctls(spec, &[SAFE_SYSCTLS_1_0, SAFE_SYSCTLS_1_27])
}

fn sysctls_1_29(_: &Annotations, spec: &PodSpec) -> Option<Violation> {
    sysctls(spec, &[SAFE_SYSCTLS_1_0, SAFE_SYSCTLS_1_27, SAFE_SYSCTLS_1_29])
}

fn sysctls_1_32(_: &Annotations, spec: &PodSpec) -> Option<Violation> {
    sysctls(spec, &[SAFE_SYSCTLS_1_0, SAFE_SYSCTLS_1_27, SAFE_SYSCTLS_1_29, SAFE_SYSCTLS_1_32])
}

/// Only the namespaced sysctls known to be safe.
fn sysctls(spec: &PodSpec, safe: &[&[&str]]) -> Option<Violation> {
    let forbidden: Vec<&str> = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.sysctls.as_ref())
        .into_iter()
        .flatten()
        .map(|s| s.name.as_str())
        .filter(|name| !safe.iter().any(|set| set.contains(name)))
        .collect();
    if forbidden.is_empty() {
        return None;
    }
    violation("forbidden sysctls", forbidden.join(", "))
}

fn windows_host_process(_: &Annotations, spec: &PodSpec) -> Option<Violation> {
    let host_process = |sc: Option<&k8s_openapi::api::core::v1::WindowsSecurityContextOptions>| {
        sc.and_then(|w| w.host_process) == Some(true)
    };
    let bad: Vec<&str> = containers(spec)
        .filter(|c| host_process(c.security.and_then(|sc| sc.windows_options.as_ref())))
        .map(|c| c.name)
        .collect();
    let pod_bad = host_process(spec.security_context.as_ref().and_then(|sc| sc.windows_options.as_ref()));
    if !pod_bad && bad.is_empty() {
        return None;
    }
    violation(
        "hostProcess",
        format!("{} must not set securityContext.windowsOptions.hostProcess=true", setters(pod_bad, &bad)),
    )
}

// --- Restricted. ---

fn allow_privilege_escalation(_: &Annotations, spec: &PodSpec) -> Option<Violation> {
    let bad: Vec<&str> = containers(spec)
        .filter(|c| c.security.and_then(|sc| sc.allow_privilege_escalation) != Some(false))
        .map(|c| c.name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "allowPrivilegeEscalation != false",
        format!("{} must set securityContext.allowPrivilegeEscalation=false", containers_named(&bad)),
    )
}

fn allow_privilege_escalation_1_25(annotations: &Annotations, spec: &PodSpec) -> Option<Violation> {
    if is_windows(spec) {
        return None;
    }
    allow_privilege_escalation(annotations, spec)
}

/// Every container drops ALL capabilities and may add back only NET_BIND_SERVICE.
fn capabilities_restricted(_: &Annotations, spec: &PodSpec) -> Option<Violation> {
    let (mut missing_drop_all, mut adding) = (Vec::new(), Vec::new());
    let mut forbidden = BTreeSet::new();
    for c in containers(spec) {
        let Some(caps) = c.security.and_then(|sc| sc.capabilities.as_ref()) else {
            missing_drop_all.push(c.name);
            continue;
        };
        if !caps.drop.iter().flatten().any(|d| d == "ALL") {
            missing_drop_all.push(c.name);
        }
        let mut added_forbidden = false;
        for cap in caps.add.iter().flatten().filter(|cap| cap.as_str() != "NET_BIND_SERVICE") {
            added_forbidden = true;
            forbidden.insert(cap.as_str());
        }
        if added_forbidden {
            adding.push(c.name);
        }
    }
    let mut details = Vec::new();
    if !missing_drop_all.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_named(&missing_drop_all)
        ));
    }
    if !adding.is_empty() {
        let forbidden: Vec<&str> = forbidden.into_iter().collect();
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_named(&adding),
            join_quote(&forbidden)
        ));
    }
    if details.is_empty() {
        return None;
    }
    violation("unrestricted capabilities", details.join("; "))
}

fn capabilities_restricted_1_25(annotations: &Annotations, spec: &PodSpec) -> Option<Violation> {
    if is_windows(spec) {
        return None;
    }
    capabilities_restricted(annotations, spec)
}

/// Only volume types that expose nothing of the node.
fn restricted_volumes(_: &Annotations, spec: &PodSpec) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for v in spec.volumes.iter().flatten() {
        let allowed = v.config_map.is_some()
            || v.csi.is_some()
            || v.downward_api.is_some()
            || v.empty_dir.is_some()
            || v.ephemeral.is_some()
            || v.image.is_some()
            || v.persistent_volume_claim.is_some()
            || v.projected.is_some()
            || v.secret.is_some();
        if allowed {
            continue;
        }
        bad.push(v.name.as_str());
        let kinds = [
            (v.host_path.is_some(), "hostPath"),
            (v.gce_persistent_disk.is_some(), "gcePersistentDisk"),
            (v.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
            (v.git_repo.is_some(), "gitRepo"),
            (v.nfs.is_some(), "nfs"),
            (v.iscsi.is_some(), "iscsi"),
            (v.glusterfs.is_some(), "glusterfs"),
            (v.rbd.is_some(), "rbd"),
            (v.flex_volume.is_some(), "flexVolume"),
            (v.cinder.is_some(), "cinder"),
            (v.cephfs.is_some(), "cephfs"),
            (v.flocker.is_some(), "flocker"),
            (v.fc.is_some(), "fc"),
            (v.azure_file.is_some(), "azureFile"),
            (v.vsphere_volume.is_some(), "vsphereVolume"),
            (v.quobyte.is_some(), "quobyte"),
            (v.azure_disk.is_some(), "azureDisk"),
            (v.photon_persistent_disk.is_some(), "photonPersistentDisk"),
            (v.portworx_volume.is_some(), "portworxVolume"),
            (v.scale_io.is_some(), "scaleIO"),
            (v.storageos.is_some(), "storageos"),
        ];
        types.insert(kinds.iter().find(|(set, _)| *set).map_or("unknown", |(_, kind)| kind));
    }
    if bad.is_empty() {
        return None;
    }
    let types: Vec<&str> = types.into_iter().collect();
    violation(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize("restricted volume type", "restricted volume types", types.len()),
            join_quote(&types)
        ),
    )
}

/// runAsNonRoot=true on the pod or on every container, and false nowhere. (Upstream 1.33
/// relaxes this for pods in a user namespace only behind an alpha feature gate that is
/// off by default.)
fn run_as_non_root(_: &Annotations, spec: &PodSpec) -> Option<Violation> {
    let pod = spec.security_context.as_ref().and_then(|sc| sc.run_as_non_root);
    let (mut explicit, mut implicit) = (Vec::new(), Vec::new());
    for c in containers(spec) {
        match c.security.and_then(|sc| sc.run_as_non_root) {
            Some(false) => explicit.push(c.name),
            Some(true) => {}
            None if pod != Some(true) => implicit.push(c.name),
            None => {}
        }
    }
    let pod_bad = pod == Some(false);
    if pod_bad || !explicit.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!("{} must not set securityContext.runAsNonRoot=false", setters(pod_bad, &explicit)),
        );
    }
    if implicit.is_empty() {
        return None;
    }
    violation(
        "runAsNonRoot != true",
        format!("pod or {} must set securityContext.runAsNonRoot=true", containers_named(&implicit)),
    )
}

fn run_as_user(_: &Annotations, spec: &PodSpec) -> Option<Violation> {
    let pod_bad = spec.security_context.as_ref().and_then(|sc| sc.run_as_user) == Some(0);
    let bad: Vec<&str> =
        containers(spec).filter(|c| c.security.and_then(|sc| sc.run_as_user) == Some(0)).map(|c| c.name).collect();
    if !pod_bad && bad.is_empty() {
        return None;
    }
    violation("runAsUser=0", format!("{} must not set runAsUser=0", setters(pod_bad, &bad)))
}

fn seccomp_restricted(_: &Annotations, spec: &PodSpec) -> Option<Violation> {
    seccomp(spec, true)
}

fn seccomp_restricted_1_25(_: &Annotations, spec: &PodSpec) -> Option<Violation> {
    if is_windows(spec) {
        return None;
    }
    seccomp(spec, true)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn spec(v: Value) -> PodSpec {
        serde_json::from_value(v).expect("a pod spec")
    }

    /// One check's verdict as upstream words it: `reason (detail)`, or none.
    fn said(check: CheckFn, annotations: &[(&str, &str)], v: Value) -> Option<String> {
        let annotations = annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        check(&annotations, &spec(v)).map(|v| format!("{} ({})", v.reason, v.detail))
    }

    fn lv(level: Level, version: Version) -> LevelVersion {
        LevelVersion { level, version }
    }

    fn restricted() -> LevelVersion {
        lv(Level::Restricted, Version::Latest)
    }

    fn sc(name: &str, security: Value) -> Value {
        json!({"name": name, "image": "busybox", "securityContext": security})
    }

    /// A container that meets every restricted check.
    fn good(name: &str) -> Value {
        sc(
            name,
            json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": true,
                   "seccompProfile": {"type": "RuntimeDefault"}}),
        )
    }

    #[test]
    fn checks_run_in_upstream_order() {
        let ids = |level: Level| CHECKS.iter().filter(|c| c.level == level).map(|c| c.id).collect::<Vec<_>>();
        for level in [Level::Baseline, Level::Restricted] {
            let mut sorted = ids(level);
            sorted.sort();
            assert_eq!(ids(level), sorted, "{level} checks are sorted by id, bytewise");
        }
        let first_restricted = CHECKS.iter().position(|c| c.level == Level::Restricted).unwrap();
        assert!(CHECKS[..first_restricted].iter().all(|c| c.level == Level::Baseline));
        for c in CHECKS {
            assert!(c.versions.windows(2).all(|w| w[0].minor < w[1].minor), "{} versions increase", c.id);
        }
    }

    #[test]
    fn a_bare_pod_under_restricted_gets_upstreams_message() {
        let pod = spec(json!({"containers": [{"name": "c", "image": "busybox"}]}));
        let verdict = Verdict(evaluate(restricted(), &Annotations::new(), &pod));
        assert_eq!(
            verdict.details(),
            "allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), \
             unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), \
             runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), \
             seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
        assert_eq!(
            verdict.reasons(),
            "allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile"
        );
        // The same pod is fine at baseline and at privileged.
        assert!(evaluate(lv(Level::Baseline, Version::Latest), &Annotations::new(), &pod).is_empty());
        assert!(evaluate(lv(Level::Privileged, Version::Latest), &Annotations::new(), &pod).is_empty());
        // A compliant pod passes.
        let ok = spec(json!({"containers": [good("c")], "initContainers": [good("i")]}));
        assert!(evaluate(restricted(), &Annotations::new(), &ok).is_empty());
    }

    #[test]
    fn baseline_and_restricted_failures_come_baseline_first() {
        let pod = spec(json!({
            "hostNetwork": true,
            "containers": [sc("c", json!({"privileged": true}))],
        }));
        let reasons = Verdict(evaluate(restricted(), &Annotations::new(), &pod)).reasons();
        assert_eq!(
            reasons,
            "host namespaces, privileged, allowPrivilegeEscalation != false, unrestricted capabilities, \
             runAsNonRoot != true, seccompProfile"
        );
        let baseline = Verdict(evaluate(lv(Level::Baseline, Version::Latest), &Annotations::new(), &pod));
        assert_eq!(
            baseline.details(),
            "host namespaces (hostNetwork=true), privileged (container \"c\" must not set securityContext.privileged=true)"
        );
    }

    #[test]
    fn versions_choose_each_checks_behaviour() {
        let pod = spec(json!({"containers": [{"name": "c", "image": "busybox"}]}));
        let reasons =
            |minor| Verdict(evaluate(lv(Level::Restricted, Version::V1(minor)), &Annotations::new(), &pod)).reasons();
        // Before 1.8 there was no allowPrivilegeEscalation, before 1.19 no seccomp field,
        // before 1.22 no capabilities requirement.
        assert_eq!(reasons(0), "runAsNonRoot != true");
        assert_eq!(reasons(8), "allowPrivilegeEscalation != false, runAsNonRoot != true");
        assert_eq!(reasons(19), "allowPrivilegeEscalation != false, runAsNonRoot != true, seccompProfile");
        assert_eq!(reasons(22), reasons(33));
        // Versions past the server's are its newest.
        assert_eq!(reasons(40), Verdict(evaluate(restricted(), &Annotations::new(), &pod)).reasons());

        // restricted replaces hostPath with the restricted volume types from 1.0 on...
        let host_path = spec(json!({"containers": [good("c")], "volumes": [{"name": "h", "hostPath": {"path": "/"}}]}));
        let v = evaluate(lv(Level::Restricted, Version::V1(0)), &Annotations::new(), &host_path);
        assert_eq!(v.iter().map(|v| v.reason.as_str()).collect::<Vec<_>>(), ["restricted volume types"]);
        // ...and the baseline capabilities check with its own from 1.22.
        let caps = spec(json!({"containers": [sc("c", json!({"capabilities": {"add": ["SYS_ADMIN"]}}))]}));
        let at = |minor| {
            evaluate(lv(Level::Restricted, Version::V1(minor)), &Annotations::new(), &caps)
                .into_iter()
                .map(|v| v.reason)
                .filter(|r| r.contains("capabilities"))
                .collect::<Vec<_>>()
        };
        assert_eq!(at(21), ["non-default capabilities"]);
        assert_eq!(at(22), ["unrestricted capabilities"]);

        // Windows pods pass the checks whose fields Windows lacks, from 1.25.
        let windows = spec(json!({"os": {"name": "windows"}, "securityContext": {"runAsNonRoot": true},
                                  "containers": [{"name": "c", "image": "busybox"}]}));
        assert!(evaluate(restricted(), &Annotations::new(), &windows).is_empty());
        assert_eq!(
            Verdict(evaluate(lv(Level::Restricted, Version::V1(24)), &Annotations::new(), &windows)).reasons(),
            "allowPrivilegeEscalation != false, unrestricted capabilities, seccompProfile"
        );
    }

    #[test]
    fn app_armor_profile() {
        assert_eq!(
            said(
                super::app_armor_profile,
                &[],
                json!({"containers": [sc("c", json!({"appArmorProfile": {"type": "RuntimeDefault"}}))]})
            ),
            None
        );
        assert_eq!(
            said(
                super::app_armor_profile,
                &[("container.apparmor.security.beta.kubernetes.io/c", "unconfined")],
                json!({"securityContext": {"appArmorProfile": {"type": "Unconfined"}},
                       "containers": [sc("c", json!({"appArmorProfile": {"type": "Unconfined"}}))]})
            ),
            Some(
                "forbidden AppArmor profiles (pod and container \"c\" and annotation must not set AppArmor profile type to \
                 \"Unconfined\", \"container.apparmor.security.beta.kubernetes.io/c=\"unconfined\"\")"
                    .into()
            )
        );
        assert_eq!(
            said(
                super::app_armor_profile,
                &[("container.apparmor.security.beta.kubernetes.io/c", "localhost/x")],
                json!({"containers": []})
            ),
            None
        );
    }

    #[test]
    fn capabilities_baseline() {
        let caps =
            |add: Value| json!({"containers": [sc("a", json!({"capabilities": {"add": add}})), sc("b", json!({}))]});
        assert_eq!(said(super::capabilities_baseline, &[], caps(json!(["CHOWN", "NET_BIND_SERVICE"]))), None);
        assert_eq!(
            said(super::capabilities_baseline, &[], caps(json!(["SYS_ADMIN", "NET_RAW", "CHOWN", "NET_RAW"]))),
            Some("non-default capabilities (container \"a\" must not include \"NET_RAW\", \"SYS_ADMIN\" in securityContext.capabilities.add)".into())
        );
    }

    #[test]
    fn host_namespaces_and_paths_and_ports() {
        assert_eq!(said(host_namespaces, &[], json!({"containers": [], "hostNetwork": false})), None);
        assert_eq!(
            said(
                host_namespaces,
                &[],
                json!({"containers": [], "hostIPC": true, "hostPID": true, "hostNetwork": true})
            ),
            Some("host namespaces (hostNetwork=true, hostPID=true, hostIPC=true)".into())
        );
        assert_eq!(
            said(
                host_path_volumes,
                &[],
                json!({"containers": [], "volumes": [
                {"name": "a", "hostPath": {"path": "/a"}}, {"name": "e", "emptyDir": {}}, {"name": "b", "hostPath": {"path": "/b"}}]})
            ),
            Some("hostPath volumes (volumes \"a\", \"b\")".into())
        );
        assert_eq!(
            said(host_path_volumes, &[], json!({"containers": [], "volumes": [{"name": "e", "emptyDir": {}}]})),
            None
        );
        let port = |c: &str, p: Value| json!({"name": c, "image": "x", "ports": p});
        assert_eq!(
            said(
                host_ports,
                &[],
                json!({"containers": [port("a", json!([{"containerPort": 80, "hostPort": 80}])), port("b", json!([{"containerPort": 1}]))]})
            ),
            Some("hostPort (container \"a\" uses hostPort 80)".into())
        );
        assert_eq!(
            said(
                host_ports,
                &[],
                json!({"initContainers": [port("i", json!([{"containerPort": 1, "hostPort": 9000}]))],
                                       "containers": [port("a", json!([{"containerPort": 80, "hostPort": 10000}, {"containerPort": 81, "hostPort": 0}]))]})
            ),
            Some("hostPort (containers \"i\", \"a\" use hostPorts 10000, 9000)".into())
        );
    }

    #[test]
    fn privileged_proc_mount_and_host_process() {
        assert_eq!(
            said(
                privileged,
                &[],
                json!({"containers": [sc("a", json!({"privileged": true})), sc("b", json!({"privileged": false}))]})
            ),
            Some("privileged (container \"a\" must not set securityContext.privileged=true)".into())
        );
        assert_eq!(
            said(
                proc_mount,
                &[],
                json!({"containers": [sc("a", json!({"procMount": "Unmasked"})), sc("b", json!({"procMount": "Default"}))]})
            ),
            Some("procMount (container \"a\" must not set securityContext.procMount to \"Unmasked\")".into())
        );
        // Even in a user namespace: 1.33 relaxes nothing without an alpha gate.
        assert!(said(
            proc_mount,
            &[],
            json!({"hostUsers": false, "containers": [sc("a", json!({"procMount": "Unmasked"}))]})
        )
        .is_some());
        assert_eq!(
            said(
                windows_host_process,
                &[],
                json!({"securityContext": {"windowsOptions": {"hostProcess": true}},
                                                  "containers": [sc("a", json!({"windowsOptions": {"hostProcess": true}}))]})
            ),
            Some(
                "hostProcess (pod and container \"a\" must not set securityContext.windowsOptions.hostProcess=true)"
                    .into()
            )
        );
        assert_eq!(
            said(
                windows_host_process,
                &[],
                json!({"containers": [sc("a", json!({"windowsOptions": {"hostProcess": false}}))]})
            ),
            None
        );
    }

    #[test]
    fn se_linux_options_by_version() {
        let pod = json!({"securityContext": {"seLinuxOptions": {"type": "spc_t"}},
                         "containers": [sc("a", json!({"seLinuxOptions": {"user": "u", "role": "r"}})),
                                        sc("b", json!({"seLinuxOptions": {"type": "container_t", "level": "s0"}}))]});
        assert_eq!(
            said(se_linux_options_1_31, &[], pod),
            Some("seLinuxOptions (pod and container \"a\" set forbidden securityContext.seLinuxOptions: type \"spc_t\"; user may not be set; role may not be set)".into())
        );
        let engine = json!({"containers": [sc("a", json!({"seLinuxOptions": {"type": "container_engine_t"}}))]});
        assert_eq!(said(se_linux_options_1_31, &[], engine.clone()), None);
        assert_eq!(
            said(se_linux_options_1_0, &[], engine),
            Some("seLinuxOptions (container \"a\" set forbidden securityContext.seLinuxOptions: type \"container_engine_t\")".into())
        );
    }

    #[test]
    fn seccomp_baseline_and_restricted() {
        assert_eq!(
            said(seccomp_annotations, &[("seccomp.security.alpha.kubernetes.io/pod", "unconfined"),
                                        ("container.seccomp.security.alpha.kubernetes.io/a", "docker/default"),
                                        ("container.seccomp.security.alpha.kubernetes.io/b", "")],
                 json!({"containers": [{"name": "a"}, {"name": "b"}]})),
            Some("seccompProfile (forbidden annotations container.seccomp.security.alpha.kubernetes.io/b=\"\", seccomp.security.alpha.kubernetes.io/pod=\"unconfined\")".into())
        );
        let unconfined = json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}},
                                "containers": [sc("a", json!({"seccompProfile": {"type": "Bogus"}})), sc("b", json!({}))]});
        let expected = "seccompProfile (pod and container \"a\" must not set securityContext.seccompProfile.type to \"Bogus\", \"Unconfined\")";
        assert_eq!(said(seccomp_baseline, &[], unconfined.clone()).as_deref(), Some(expected));
        assert_eq!(said(seccomp_restricted, &[], unconfined).as_deref(), Some(expected));
        // Unset is fine at baseline; restricted wants it on the pod or every container.
        let partly = json!({"containers": [sc("a", json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "p"}})), sc("b", json!({}))]});
        assert_eq!(said(seccomp_baseline, &[], partly.clone()), None);
        assert_eq!(
            said(seccomp_restricted, &[], partly),
            Some("seccompProfile (pod or container \"b\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")".into())
        );
        assert_eq!(
            said(
                seccomp_restricted,
                &[],
                json!({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}, "containers": [sc("b", json!({}))]})
            ),
            None
        );
    }

    #[test]
    fn sysctls_by_version() {
        let pod = json!({"securityContext": {"sysctls": [
            {"name": "net.ipv4.tcp_rmem", "value": "1"}, {"name": "kernel.msgmax", "value": "1"},
            {"name": "net.ipv4.ip_local_port_range", "value": "1 2"}]}, "containers": []});
        assert_eq!(said(sysctls_1_32, &[], pod.clone()), Some("forbidden sysctls (kernel.msgmax)".into()));
        assert_eq!(said(sysctls_1_29, &[], pod), Some("forbidden sysctls (net.ipv4.tcp_rmem, kernel.msgmax)".into()));
        let reserved = json!({"securityContext": {"sysctls": [{"name": "net.ipv4.ip_local_reserved_ports", "value": "1"}]}, "containers": []});
        assert_eq!(said(sysctls_1_27, &[], reserved.clone()), None);
        assert!(said(sysctls_1_0, &[], reserved).is_some());
    }

    #[test]
    fn allow_privilege_escalation_and_capabilities_restricted() {
        let pod = json!({"initContainers": [sc("i", json!({"allowPrivilegeEscalation": true}))],
                         "containers": [sc("a", json!({"allowPrivilegeEscalation": false})), {"name": "b"}],
                         "ephemeralContainers": [{"name": "e"}]});
        assert_eq!(
            said(allow_privilege_escalation, &[], pod),
            Some("allowPrivilegeEscalation != false (containers \"i\", \"b\", \"e\" must set securityContext.allowPrivilegeEscalation=false)".into())
        );
        let caps = json!({"containers": [
            sc("a", json!({"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}})),
            sc("b", json!({"capabilities": {"drop": ["NET_RAW"], "add": ["SYS_ADMIN", "CHOWN"]}})),
            sc("c", json!({}))]});
        assert_eq!(
            said(capabilities_restricted, &[], caps),
            Some("unrestricted capabilities (containers \"b\", \"c\" must set securityContext.capabilities.drop=[\"ALL\"]; \
                  container \"b\" must not include \"CHOWN\", \"SYS_ADMIN\" in securityContext.capabilities.add)".into())
        );
    }

    #[test]
    fn restricted_volumes() {
        let pod = json!({"containers": [], "volumes": [
            {"name": "ok1", "configMap": {"name": "x"}}, {"name": "ok2", "projected": {"sources": []}},
            {"name": "h", "hostPath": {"path": "/"}}, {"name": "n", "nfs": {"server": "s", "path": "/"}},
            {"name": "h2", "hostPath": {"path": "/x"}}]});
        assert_eq!(
            said(super::restricted_volumes, &[], pod),
            Some("restricted volume types (volumes \"h\", \"n\", \"h2\" use restricted volume types \"hostPath\", \"nfs\")".into())
        );
        let one = json!({"containers": [], "volumes": [{"name": "g", "gitRepo": {"repository": "r"}}]});
        assert_eq!(
            said(super::restricted_volumes, &[], one),
            Some("restricted volume types (volume \"g\" uses restricted volume type \"gitRepo\")".into())
        );
    }

    #[test]
    fn run_as_non_root_and_run_as_user() {
        let explicit = json!({"securityContext": {"runAsNonRoot": false, "runAsUser": 0},
                              "containers": [sc("a", json!({"runAsNonRoot": false, "runAsUser": 0})), sc("b", json!({"runAsUser": 1000}))]});
        assert_eq!(
            said(run_as_non_root, &[], explicit.clone()),
            Some(
                "runAsNonRoot != true (pod and container \"a\" must not set securityContext.runAsNonRoot=false)".into()
            )
        );
        assert_eq!(
            said(run_as_user, &[], explicit),
            Some("runAsUser=0 (pod and container \"a\" must not set runAsUser=0)".into())
        );
        let pod_level = json!({"securityContext": {"runAsNonRoot": true}, "containers": [sc("a", json!({}))]});
        assert_eq!(said(run_as_non_root, &[], pod_level.clone()), None);
        assert_eq!(said(run_as_user, &[], pod_level), None);
        let implicit =
            json!({"containers": [sc("a", json!({"runAsNonRoot": true})), sc("b", json!({})), sc("c", json!({}))]});
        assert_eq!(
            said(run_as_non_root, &[], implicit),
            Some(
                "runAsNonRoot != true (pod or containers \"b\", \"c\" must set securityContext.runAsNonRoot=true)"
                    .into()
            )
        );
        // 1.33 does not relax either for user-namespaced pods (that came in 1.35).
        assert!(said(run_as_non_root, &[], json!({"hostUsers": false, "containers": [sc("a", json!({}))]})).is_some());
    }

    #[test]
    fn go_quoting_of_annotation_values() {
        assert_eq!(go_quote("plain"), "\"plain\"");
        assert_eq!(go_quote("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\x01\"");
        assert_eq!(go_quote("héllo"), "\"héllo\"");
    }
}
