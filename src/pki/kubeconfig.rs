//! Kubeconfig files: one cluster, one user and one context, all named `default` as k3s
//! names them, with the CA, client certificate and key embedded so the file stands alone.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// A kubeconfig for `server_url`, trusting `ca_pem`, authenticating with the client
/// certificate and key.
pub(crate) fn render(server_url: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    // A JSON string is a valid YAML double-quoted scalar: the URL needs no escaping rules
    // of its own. base64 data never needs quoting.
    let server = serde_json::Value::String(server_url.to_string()).to_string();
    format!(
        "apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server}
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
preferences: {{}}
users:
- name: default
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
",
        ca = STANDARD.encode(ca_pem),
        cert = STANDARD.encode(cert_pem),
        key = STANDARD.encode(key_pem),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rendering_is_yaml_with_the_data_embedded() {
        let text = render("https://[::1]:6443", "CA\n", "CERT\n", "KEY\n");
        let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(doc["clusters"][0]["cluster"]["server"], "https://[::1]:6443");
        assert_eq!(doc["clusters"][0]["cluster"]["certificate-authority-data"], STANDARD.encode("CA\n"));
        assert_eq!(doc["users"][0]["user"]["client-certificate-data"], STANDARD.encode("CERT\n"));
        assert_eq!(doc["users"][0]["user"]["client-key-data"], STANDARD.encode("KEY\n"));
        assert_eq!(doc["current-context"], "default");
        assert_eq!(doc["contexts"][0]["context"]["user"], "default");
        // A URL with characters YAML cares about stays one string.
        let text = render("https://h:6443/#x: y", "a", "b", "c");
        let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(doc["clusters"][0]["cluster"]["server"], "https://h:6443/#x: y");
    }
}
