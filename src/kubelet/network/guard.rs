//! Keeps pod traffic on the node. Forwarding has to be on (service traffic DNATed back onto
//! the bridge is routed), and with it the node would also route pod packets out of its
//! uplinks and outside packets into the pods. A small nftables table of our own drops
//! anything forwarded between the bridge and any other interface; traffic among pods (bridge
//! to bridge) and between pods and the node itself (input/output, not forwarded) is untouched.
//! Connections whose destination a DNAT rule chose (services, node ports) pass: a drop here
//! would be final for every other table, so the service proxy could not make an exception.

use std::io::{self, Write};
use std::process::{Command, Stdio};

/// The nftables table holding the rule; owned by the pod network alone.
pub const TABLE: &str = "k3rs-podnet";

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("cannot run nft: {0}")]
    Spawn(io::Error),
    #[error("nft refused the ruleset ({status}): {stderr}")]
    Refused { status: std::process::ExitStatus, stderr: String },
}

/// The ruleset, replacing any previous version of the table in one transaction.
pub fn ruleset(bridge: &str) -> String {
    // Declaring the table first makes the delete succeed also when it does not exist yet.
    format!(
        "table inet {TABLE}\n\
         delete table inet {TABLE}\n\
         table inet {TABLE} {{\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tct status dnat accept comment \"service traffic: the proxy's rules chose where it goes\"\n\
         \t\tiifname \"{bridge}\" oifname != \"{bridge}\" counter drop comment \"pod traffic stays on the node\"\n\
         \t\toifname \"{bridge}\" iifname != \"{bridge}\" counter drop comment \"pods are not routed to from outside\"\n\
         \t}}\n\
         }}\n"
    )
}

/// Loads an nftables ruleset: the guard's one side effect, behind a trait so the pod network
/// is tested without touching the node's firewall.
pub trait Nft: Send + Sync {
    /// Applies `ruleset` (nft's own syntax) as one transaction in the calling process's
    /// network namespace.
    fn apply(&self, ruleset: &str) -> Result<(), GuardError>;
}

/// Applies `tx` through `nft` on a blocking thread. On failure it counts it in `failures`
/// and returns how long to wait before the caller retries with a full sync.
pub async fn apply_blocking(
    nft: &std::sync::Arc<dyn Nft>,
    tx: String,
    failures: &mut u32,
    what: &str,
) -> Result<(), std::time::Duration> {
    let nft = nft.clone();
    match tokio::task::spawn_blocking(move || nft.apply(&tx)).await {
        Ok(Ok(())) => {
            *failures = 0;
            Ok(())
        }
        Ok(Err(e)) => {
            *failures += 1;
            tracing::warn!(error = %e, failures = *failures, "cannot apply the {what} rules; a full sync follows");
            Err(crate::controllers::runtime::failure_backoff(*failures + 6).min(std::time::Duration::from_secs(30)))
        }
        Err(e) => {
            tracing::error!(error = %e, "the {what} nft task failed");
            Err(std::time::Duration::from_secs(1))
        }
    }
}

/// The `nft` command, given the ruleset on its standard input.
pub struct NftCommand;

impl Nft for NftCommand {
    fn apply(&self, ruleset: &str) -> Result<(), GuardError> {
        let mut child = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(GuardError::Spawn)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(ruleset.as_bytes()).map_err(GuardError::Spawn)?;
        }
        let out = child.wait_with_output().map_err(GuardError::Spawn)?;
        if !out.status.success() {
            return Err(GuardError::Refused {
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }
}

/// Installs (or refreshes) the guard for `bridge`.
pub fn install(nft: &dyn Nft, bridge: &str) -> Result<(), GuardError> {
    nft.apply(&ruleset(bridge))
}

/// An [`Nft`] that keeps the rulesets it is given, for tests.
#[cfg(test)]
#[derive(Default)]
pub struct FakeNft {
    pub applied: std::sync::Mutex<Vec<String>>,
}

#[cfg(test)]
impl Nft for FakeNft {
    fn apply(&self, ruleset: &str) -> Result<(), GuardError> {
        self.applied.lock().unwrap_or_else(|p| p.into_inner()).push(ruleset.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_drops_only_traffic_crossing_the_bridge_boundary() {
        let r = ruleset("k3rs0");
        assert!(r.starts_with("table inet k3rs-podnet\ndelete table inet k3rs-podnet\n"));
        assert!(r.contains("type filter hook forward priority filter; policy accept;"));
        let dnat = r.find("ct status dnat accept").unwrap();
        assert!(dnat < r.find("drop").unwrap(), "service traffic is accepted before the drops");
        assert!(r.contains("iifname \"k3rs0\" oifname != \"k3rs0\" counter drop"));
        assert!(r.contains("oifname \"k3rs0\" iifname != \"k3rs0\" counter drop"));
    }

    #[test]
    fn install_applies_the_bridges_ruleset() {
        let nft = FakeNft::default();
        install(&nft, "br-x").unwrap();
        assert_eq!(*nft.applied.lock().unwrap(), [ruleset("br-x")]);
    }
}
