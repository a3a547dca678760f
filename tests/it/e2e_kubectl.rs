//! End to end: the real `k3rs server` binary, run as root inside a network namespace this
//! test makes (a veth pair inside it is the node's interface), driven by the real kubectl
//! (the default one, 1.27 and 1.33) and the official Python client.

use crate::common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::cluster::{kubectl_dir, Cluster};

const CONFIGMAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
  labels: {app: web, tier: front}
data:
  greeting: hello
";

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        command: [sleep, '3600']
        env: [{name: A, value: '1'}]
";

/// The smoke flow every kubectl version must pass.
fn smoke(c: &Cluster, kubectl: &Path) {
    let k = |args: &[&str]| c.ok(kubectl, args, None);
    let ki = |args: &[&str], input: &str| c.ok(kubectl, args, Some(input));
    ki(&["apply", "-f", "-"], CONFIGMAP);
    let uid = k(&["get", "configmap", "app-config", "-o", "jsonpath={.metadata.uid}"]);
    assert!(!uid.is_empty());
    let changed = CONFIGMAP.replace("hello", "bonjour");
    ki(&["apply", "-f", "-"], &changed);
    assert_eq!(k(&["get", "cm", "app-config", "-o", "jsonpath={.data.greeting}"]), "bonjour");
    assert_eq!(k(&["get", "cm", "app-config", "-o", "jsonpath={.metadata.uid}"]), uid, "apply must patch in place");
    let json = k(&["get", "cm", "-l", "tier=front", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    k(&["label", "cm", "app-config", "color=blue"]);
    k(&["annotate", "cm", "app-config", "note=checked"]);
    let yaml = k(&["get", "cm", "app-config", "-o", "yaml"]);
    assert!(yaml.contains("color: blue") && yaml.contains("note: checked"), "{yaml}");
    k(&["patch", "cm", "app-config", "--type=merge", "-p", r#"{"data":{"m":"1"}}"#]);
    k(&["patch", "cm", "app-config", "--type=json", "-p", r#"[{"op":"add","path":"/data/j","value":"2"}]"#]);
    assert_eq!(k(&["get", "cm", "app-config", "-o", "jsonpath={.data.m}{.data.j}"]), "12");

    ki(&["apply", "-f", "-"], DEPLOYMENT);
    k(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"busybox:1.37"}]}}}}"#,
    ]);
    let dep = k(&["get", "deploy", "web", "-o", "json"]);
    let d: serde_json::Value = serde_json::from_str(&dep).unwrap();
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "busybox:1.37");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["env"][0]["name"], "A",
        "strategic merge keeps the other fields"
    );
    assert_eq!(d["metadata"]["generation"], 2);
    k(&["delete", "deploy", "web"]);
    k(&["delete", "cm", "app-config"]);
    let gone = c.kubectl_with(kubectl, &["get", "cm", "app-config"], None);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("NotFound"), "{}", String::from_utf8_lossy(&gone.stderr));
}

#[test]
fn kubectl_smoke_flow_on_every_version() {
    let c = Cluster::start("smoke");
    let dir = kubectl_dir();
    smoke(&c, Path::new("kubectl"));
    for v in ["kubectl.1.27", "kubectl.1.33"] {
        smoke(&c, &dir.join(v));
    }
}

#[test]
fn python_client_lists_creates_and_watches() {
    let c = Cluster::start("python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/python_client.py");
    let python = crate::common::python();
    let out = c.ns.command(&python).arg(script).env("KUBECONFIG", c.kubeconfig()).output().expect("run python3");
    assert!(
        out.status.success(),
        "python client failed:\n{}\n{}\n--- server log ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        c.log()
    );
}

/// One manifest per resource kind the issue names, with a field to change on re-apply.
const MANIFESTS: &[(&str, &str, &str)] = &[
    ("configmap", "cm-e2e", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-e2e, labels: {e2e: 'yes'}}\ndata: {k: 'VALUE'}\n"),
    ("secret", "secret-e2e", "apiVersion: v1\nkind: Secret\nmetadata: {name: secret-e2e, labels: {e2e: 'yes'}}\nstringData: {k: 'VALUE'}\n"),
    ("service", "svc-e2e", "apiVersion: v1\nkind: Service\nmetadata: {name: svc-e2e, labels: {e2e: 'yes'}, annotations: {v: 'VALUE'}}\nspec:\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n"),
    ("deployment", "deploy-e2e", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: deploy-e2e, labels: {e2e: 'yes'}}\nspec:\n  selector: {matchLabels: {app: d}}\n  template:\n    metadata: {labels: {app: d}}\n    spec: {containers: [{name: c, image: 'busybox:VALUE'}]}\n"),
    ("statefulset", "sts-e2e", "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: sts-e2e, labels: {e2e: 'yes'}}\nspec:\n  serviceName: svc-e2e\n  selector: {matchLabels: {app: s}}\n  template:\n    metadata: {labels: {app: s}}\n    spec: {containers: [{name: c, image: 'busybox:VALUE'}]}\n"),
    ("daemonset", "ds-e2e", "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: ds-e2e, labels: {e2e: 'yes'}}\nspec:\n  selector: {matchLabels: {app: ds}}\n  template:\n    metadata: {labels: {app: ds}}\n    spec: {containers: [{name: c, image: 'busybox:VALUE'}]}\n"),
    ("job", "job-e2e", "apiVersion: batch/v1\nkind: Job\nmetadata: {name: job-e2e, labels: {e2e: 'yes'}, annotations: {v: 'VALUE'}}\nspec:\n  template:\n    spec: {restartPolicy: Never, containers: [{name: c, image: busybox, command: ['true']}]}\n"),
    ("cronjob", "cj-e2e", "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: cj-e2e, labels: {e2e: 'yes'}, annotations: {v: 'VALUE'}}\nspec:\n  schedule: '*/5 * * * *'\n  jobTemplate:\n    spec:\n      template:\n        spec: {restartPolicy: OnFailure, containers: [{name: c, image: busybox}]}\n"),
    ("ingress", "ing-e2e", "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: ing-e2e, labels: {e2e: 'yes'}, annotations: {v: 'VALUE'}}\nspec:\n  rules:\n  - host: example.test\n    http:\n      paths: [{path: /, pathType: Prefix, backend: {service: {name: svc-e2e, port: {number: 80}}}}]\n"),
    ("role", "role-e2e", "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: role-e2e, labels: {e2e: 'yes'}, annotations: {v: 'VALUE'}}\nrules: [{apiGroups: [''], resources: [pods], verbs: [get, list]}]\n"),
    ("storageclass", "sc-e2e", "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: sc-e2e, labels: {e2e: 'yes'}, annotations: {v: 'VALUE'}}\nprovisioner: example.test/none\n"),
];

#[test]
fn kubectl_verbs_on_the_named_resources() {
    let c = Cluster::start("verbs");
    let kubectl = Path::new("kubectl");
    let k = |args: &[&str]| c.ok(kubectl, args, None);
    let ki = |args: &[&str], input: &str| c.ok(kubectl, args, Some(input));
    for (kind, name, manifest) in MANIFESTS {
        let first = manifest.replace("VALUE", "1.36");
        let second = manifest.replace("VALUE", "1.37");
        ki(&["create", "-f", "-"], &first);
        let uid = k(&["get", kind, name, "-o", "jsonpath={.metadata.uid}"]);
        let diff = c.kubectl_with(kubectl, &["diff", "-f", "-"], Some(&second));
        assert_eq!(
            diff.status.code(),
            Some(1),
            "kubectl diff must report the change for {kind}: {}",
            String::from_utf8_lossy(&diff.stderr)
        );
        // kubectl masks secret values in diffs.
        if *kind != "secret" {
            assert!(
                String::from_utf8_lossy(&diff.stdout).contains("1.37"),
                "{kind}: {}",
                String::from_utf8_lossy(&diff.stdout)
            );
        }
        ki(&["apply", "-f", "-"], &second);
        assert_eq!(k(&["get", kind, name, "-o", "jsonpath={.metadata.uid}"]), uid, "{kind}: apply must patch in place");
        let yaml = k(&["get", kind, name, "-o", "yaml"]);
        assert!(yaml.contains("1.37") || *kind == "secret", "{kind}: {yaml}");
        let wide = k(&["get", kind, "-l", "e2e=yes", "-o", "wide"]);
        assert!(wide.lines().next().unwrap_or("").starts_with("NAME"), "{kind}: {wide}");
        assert!(wide.contains(name), "{kind}: {wide}");
        let by_field = k(&["get", kind, "--field-selector", &format!("metadata.name={name}"), "-o", "name"]);
        assert_eq!(by_field.lines().count(), 1, "{kind}: {by_field}");
        k(&["label", kind, name, "extra=1"]);
        k(&["annotate", kind, name, "extra=2"]);
        k(&["describe", kind, name]);
        let replaced = k(&["get", kind, name, "-o", "json"]);
        ki(&["replace", "-f", "-"], &replaced);
        k(&["patch", kind, name, "--type=merge", "-p", r#"{"metadata":{"labels":{"merged":"yes"}}}"#]);
        k(&[
            "patch",
            kind,
            name,
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/metadata/labels/json","value":"yes"}]"#,
        ]);
        k(&["patch", kind, name, "-p", r#"{"metadata":{"labels":{"strategic":"yes"}}}"#]);
        let labels = k(&["get", kind, name, "-o", "jsonpath={.metadata.labels}"]);
        for l in ["merged", "json", "strategic", "extra"] {
            assert!(labels.contains(l), "{kind}: {labels}");
        }
    }
    // Server-side dry run shows the defaulted object and stores nothing.
    let dry = k(&["create", "deployment", "dry", "--image=busybox", "--dry-run=server", "-o", "yaml"]);
    assert!(dry.contains("revisionHistoryLimit: 10") && dry.contains("imagePullPolicy: Always"), "{dry}");
    assert!(!c.kubectl(&["get", "deployment", "dry"]).status.success());
    for (kind, name, _) in MANIFESTS {
        k(&["delete", kind, name]);
    }
}

#[test]
fn api_resources_explain_and_watch() {
    let c = Cluster::start("disco");
    let k = |args: &[&str]| c.ok(Path::new("kubectl"), args, None);
    let res = k(&["api-resources"]);
    for line in ["deployments", "deploy", "apps/v1", "Deployment"] {
        assert!(res.contains(line), "{res}");
    }
    let explain = k(&["explain", "deployment.spec.strategy"]);
    assert!(explain.contains("rollingUpdate"), "{explain}");
    // kubectl get -w streams changes as they happen.
    let mut cmd = c.ns.command("kubectl");
    cmd.arg("--kubeconfig").arg(c.kubeconfig()).args(["get", "configmaps", "-w", "--output-watch-events"]);
    let mut watcher = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(800));
    k(&["create", "configmap", "watched", "--from-literal=a=b"]);
    k(&["delete", "configmap", "watched"]);
    std::thread::sleep(Duration::from_millis(800));
    let _ = watcher.kill();
    let out = watcher.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with("ADDED") && l.contains("watched")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("DELETED") && l.contains("watched")), "{text}");
}

#[test]
fn auth_whoami_can_i_and_impersonation_over_tls() {
    let c = Cluster::start("auth");
    let kubectl = Path::new("kubectl");
    let who = c.ok(
        kubectl,
        &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups}"],
        None,
    );
    assert_eq!(who, r#"system:admin ["system:masters","system:authenticated"]"#);
    assert_eq!(c.ok(kubectl, &["auth", "can-i", "create", "pods"], None).trim(), "yes");
    let list = c.ok(kubectl, &["auth", "can-i", "--list"], None);
    assert!(list.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["*.*", "[]", "[]", "[*]"]), "{list}");
    let out = c.kubectl(&["--as=someone", "get", "pods"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        r#"Error from server (Forbidden): pods is forbidden: User "someone" cannot list resource "pods" in API group "" in the namespace "default""#
    );
    let out = c.kubectl(&["--as=someone", "auth", "can-i", "create", "pods"]);
    assert_eq!((out.status.success(), String::from_utf8_lossy(&out.stdout).trim()), (false, "no"));

    // A service account's own token: RBAC gives it nothing until it is bound.
    let token = c.k(&["create", "token", "default"]).trim().to_string();
    let view =
        |path: &str| c.k(&["config", "view", "--raw", "-o", &format!("jsonpath={{.clusters[0].cluster.{path}}}")]);
    let sa_config = c.kubeconfig().with_file_name("sa-kubeconfig");
    std::fs::write(
        &sa_config,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\n\
             contexts:\n- name: c\n  context: {{cluster: c, user: sa, namespace: default}}\ncurrent-context: c\n\
             users:\n- name: sa\n  user:\n    token: {token}\n",
            view("server"),
            view("certificate-authority-data")
        ),
    )
    .unwrap();
    let sa = sa_config.to_str().unwrap();
    let who = c.k(&["--kubeconfig", sa, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
    assert_eq!(who, "system:serviceaccount:default:default");
    let out = c.kubectl(&["--kubeconfig", sa, "get", "pods"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        r#"Error from server (Forbidden): pods is forbidden: User "system:serviceaccount:default:default" cannot list resource "pods" in API group "" in the namespace "default""#
    );
    c.k(&["create", "rolebinding", "default-view", "--clusterrole=view", "--serviceaccount=default:default"]);
    c.k(&["--kubeconfig", sa, "get", "pods"]);
    let out = c.kubectl(&["--kubeconfig", sa, "auth", "can-i", "create", "pods"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
    let list = c.k(&["--kubeconfig", sa, "auth", "can-i", "--list"]);
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["pods", "[]", "[]", "[get", "list", "watch]"]),
        "{list}"
    );
}
