//! End to end: a pod's API access, as in-cluster clients and operators use it. The real
//! binary runs a pod; ServiceAccount admission gave it the `kube-api-access-*` volume; the
//! kubelet filled it (a token bound to the pod, the cluster CA, the namespace). The official
//! Python client, with its in-cluster configuration, then reaches the API through the
//! `kubernetes` Service from the pod's network namespace: refused until the account is
//! bound to a role, as upstream. Downward API files follow the pod's labels.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::Cluster;

const IMAGE: &str = "docker.io/library/busybox:1.36";
const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn cluster(tag: &str) -> Cluster {
    Cluster::start_with(tag, &[], |data| {
        let drop_dir = data.join("agent/images");
        std::fs::create_dir_all(&drop_dir).unwrap();
        common::busybox::oci_archive(&drop_dir, IMAGE);
    })
}

fn apply(c: &Cluster, manifest: &str) {
    c.ok(Path::new("kubectl"), &["apply", "-f", "-"], Some(manifest));
}

fn running(c: &Cluster, pod: &str) {
    c.wait_for(&["pod", pod], "{.status.phase}", Duration::from_secs(60), |p| p == "Running");
}

/// Runs the in-cluster Python script in the pod's network namespace with the pod's files and
/// environment; returns what it printed.
fn in_cluster_client(c: &Cluster, pod: &str, files: &Path) -> String {
    let uid = c.k(&["get", "pod", pod, "-o", "jsonpath={.metadata.uid}"]);
    let holder = k3rs::kubelet::network::netns::Holder::read(&c.data_dir().join("agent/run/sandboxes").join(&uid))
        .expect("the pod's holder file");
    let env = c.k(&["exec", pod, "--", "env"]);
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {env}"))
            .to_string()
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/python_incluster.py");
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", holder.pid))
        .arg("--")
        .arg(common::python())
        .arg(script)
        .arg(files.join("token"))
        .arg(files.join("ca.crt"))
        .arg("default")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("KUBERNETES_SERVICE_HOST", var("KUBERNETES_SERVICE_HOST"))
        .env("KUBERNETES_SERVICE_PORT", var("KUBERNETES_SERVICE_PORT"))
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "in-cluster client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn pods_reach_the_api_with_their_service_account_through_the_kubernetes_service() {
    let c = cluster("sa");
    c.k(&["run", "reader", "--image=busybox:1.36", "--", "sleep", "3600"]);
    running(&c, "reader");

    // Admission gave the pod upstream's volume and mount.
    let vol = c.k(&["get", "pod", "reader", "-o", "jsonpath={.spec.volumes[0].name}"]);
    assert!(vol.starts_with("kube-api-access-"), "{vol}");
    let sources = c.k(&["get", "pod", "reader", "-o", "jsonpath={.spec.volumes[0].projected.sources}"]);
    assert!(sources.contains(r#""expirationSeconds":3607"#) && sources.contains("kube-root-ca.crt"), "{sources}");
    let mount = c.k(&["get", "pod", "reader", "-o", "jsonpath={.spec.containers[0].volumeMounts[0]}"]);
    assert!(mount.contains(MOUNT) && mount.contains(r#""readOnly":true"#), "{mount}");

    // The container sees the three files.
    let ls = c.k(&["exec", "reader", "--", "ls", MOUNT]);
    assert_eq!(ls, "ca.crt\nnamespace\ntoken\n");
    assert_eq!(c.k(&["exec", "reader", "--", "cat", &format!("{MOUNT}/namespace")]), "default");
    let files = tempfile::tempdir().unwrap();
    for f in ["token", "ca.crt"] {
        let body = c.k(&["exec", "reader", "--", "cat", &format!("{MOUNT}/{f}")]);
        std::fs::write(files.path().join(f), body).unwrap();
    }
    let ca = std::fs::read_to_string(files.path().join("ca.crt")).unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");

    // The default account holds nothing: upstream's 403.
    let out = in_cluster_client(&c, "reader", files.path());
    assert_eq!(
        out,
        "status=403\npods is forbidden: User \"system:serviceaccount:default:default\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"\n"
    );
    // Bound to view, it lists.
    c.k(&["create", "rolebinding", "reader-view", "--clusterrole=view", "--serviceaccount=default:default"]);
    assert_eq!(in_cluster_client(&c, "reader", files.path()), "pods=reader\n");

    // The token is bound to the pod, with upstream's extended lifetime and renewal time.
    let token = std::fs::read_to_string(files.path().join("token")).unwrap();
    let payload = token.split('.').nth(1).expect("a JWT");
    use base64::Engine;
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let uid = c.k(&["get", "pod", "reader", "-o", "jsonpath={.metadata.uid}"]);
    assert_eq!(claims["kubernetes.io"]["pod"]["uid"], uid.as_str(), "{claims}");
    let (iat, exp, warn) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
        claims["kubernetes.io"]["warnafter"].as_i64().unwrap(),
    );
    assert_eq!((exp - iat, warn - iat), (365 * 24 * 3600, 3607), "{claims}");

    // Opting out: the pod's own setting, or else its account's.
    apply(
        &c,
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: quiet}\nautomountServiceAccountToken: false\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: quiet}\nspec:\n  serviceAccountName: quiet\n  containers: [{name: c, image: 'busybox:1.36', command: [sleep, '3600']}]\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: loud}\nspec:\n  serviceAccountName: quiet\n  automountServiceAccountToken: true\n  containers: [{name: c, image: 'busybox:1.36', command: [sleep, '3600']}]\n",
    );
    assert_eq!(c.k(&["get", "pod", "quiet", "-o", "jsonpath={.spec.volumes}"]), "");
    let loud = c.k(&["get", "pod", "loud", "-o", "jsonpath={.spec.volumes[0].name}"]);
    assert!(loud.starts_with("kube-api-access-"), "{loud}");
}

#[test]
fn downward_api_files_follow_label_changes() {
    let c = cluster("downward");
    apply(
        &c,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: labelled, labels: {tier: front}}\nspec:\n  containers:\n  - name: c\n    image: 'busybox:1.36'\n    command: [sleep, '3600']\n    resources: {limits: {memory: 64Mi}}\n    volumeMounts: [{name: info, mountPath: /etc/podinfo}]\n  volumes:\n  - name: info\n    downwardAPI:\n      items:\n      - {path: tier, fieldRef: {fieldPath: \"metadata.labels['tier']\"}}\n      - {path: mem, resourceFieldRef: {containerName: c, resource: limits.memory, divisor: 1Mi}}\n",
    );
    running(&c, "labelled");
    assert_eq!(c.k(&["exec", "labelled", "--", "cat", "/etc/podinfo/tier", "/etc/podinfo/mem"]), "front64");
    c.k(&["label", "pod", "labelled", "tier=back", "--overwrite"]);
    let start = Instant::now();
    loop {
        let tier = c.k(&["exec", "labelled", "--", "cat", "/etc/podinfo/tier"]);
        if tier == "back" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the file still says {tier:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("label change → file in {:?}", start.elapsed());
}
