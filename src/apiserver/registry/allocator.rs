//! Persistent allocators for service cluster IPs and node ports.
//!
//! Every allocated value is a key in the store (`/registry/k3rs/allocations/<pool>/<value>`)
//! created with create-if-absent, so two services can never get the same address even when
//! they race, and allocations survive restarts. Releasing deletes the key.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::apiserver::status::{ApiError, Cause};
use crate::store::{KeyRange, RangeOptions, Store, WriteOutcome};
use crate::util::cidr::Cidr;

/// The default node port range, as upstream's `--service-node-port-range`.
pub const NODE_PORTS: std::ops::RangeInclusive<u32> = 30000..=32767;

fn key(pool: &str, value: &str) -> String {
    format!("/registry/k3rs/allocations/{pool}/{value}")
}

async fn taken(store: &Arc<dyn Store>, pool: &str) -> Result<HashSet<String>, ApiError> {
    let prefix = key(pool, "");
    let res =
        store.range(&KeyRange::prefix(prefix.clone()), RangeOptions { keys_only: true, ..Default::default() }).await?;
    Ok(res.kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key[prefix.len()..]).into_owned()).collect())
}

/// Claims `value` in `pool` for `owner`; false when it is already someone's.
async fn claim(store: &Arc<dyn Store>, pool: &str, value: &str, owner: &str) -> Result<bool, ApiError> {
    let out = store.create(Bytes::from(key(pool, value)), Bytes::from(owner.to_string()), None).await?;
    Ok(matches!(out, WriteOutcome::Applied { .. }))
}

pub async fn release(store: &Arc<dyn Store>, pool: &str, value: &str) {
    if let Err(e) = store.delete(Bytes::from(key(pool, value)), None).await {
        tracing::warn!(pool, value, error = %e, "releasing an allocation failed");
    }
}

/// Allocates a cluster IP from `cidr` (a requested one, or the first free one after a
/// random start), skipping the network and broadcast addresses.
pub async fn allocate_ip(
    store: &Arc<dyn Store>,
    cidr: &Cidr,
    requested: Option<IpAddr>,
    owner: &str,
    dry_run: bool,
) -> Result<IpAddr, ApiError> {
    let size: u128 = if cidr.host_bits() >= 127 { u128::MAX } else { 1u128 << cidr.host_bits() };
    if let Some(ip) = requested {
        let first = cidr.nth(1);
        if !cidr.contains(ip) || Some(ip) < first || ip == cidr.last() {
            return Err(invalid_ip(
                ip,
                &format!("provided IP is not in the valid range. The range of valid IPs is {cidr}"),
            ));
        }
        let free = !taken(store, "serviceips").await?.contains(&ip.to_string());
        if dry_run && free {
            return Ok(ip);
        }
        if !free || !claim(store, "serviceips", &ip.to_string(), owner).await? {
            return Err(invalid_ip(ip, "provided IP is already allocated"));
        }
        return Ok(ip);
    }
    for _attempt in 0..8 {
        let used = taken(store, "serviceips").await?;
        // Usable host addresses: 1 ..= size-2 (the first, .1, is the `kubernetes` service's).
        let usable = size.saturating_sub(2).max(1);
        let start = fastrand::u128(0..usable);
        let mut pick = None;
        for i in 0..usable.min(1 << 20) {
            let n = 1 + (start + i) % usable;
            if n == 1 && usable > 1 {
                continue;
            }
            if let Some(ip) = cidr.nth(n) {
                if !used.contains(&ip.to_string()) {
                    pick = Some(ip);
                    break;
                }
            }
        }
        let Some(ip) = pick else { break };
        if dry_run || claim(store, "serviceips", &ip.to_string(), owner).await? {
            return Ok(ip);
        }
    }
    Err(ApiError::internal(format!("failed to allocate a serviceIP: range is full ({cidr})")))
}

fn invalid_ip(ip: IpAddr, detail: &str) -> ApiError {
    let mut e = ApiError::invalid("", "Service", "", vec![Cause::invalid("spec.clusterIPs", ip, detail)]);
    e.message = format!("Service is invalid: spec.clusterIPs: Invalid value: [\"{ip}\"]: {detail}");
    e
}

/// Allocates a node port (a requested one, or a free one).
pub async fn allocate_node_port(
    store: &Arc<dyn Store>,
    requested: Option<u32>,
    owner: &str,
    field: &str,
    dry_run: bool,
) -> Result<u32, ApiError> {
    let used = taken(store, "nodeports").await?;
    if let Some(p) = requested {
        if !NODE_PORTS.contains(&p) {
            return Err(ApiError::invalid(
                "",
                "Service",
                "",
                vec![Cause::invalid(
                    field,
                    p,
                    "provided port is not in the valid range. The range of valid ports is 30000-32767",
                )],
            ));
        }
        if used.contains(&p.to_string()) || (!dry_run && !claim(store, "nodeports", &p.to_string(), owner).await?) {
            return Err(ApiError::invalid(
                "",
                "Service",
                "",
                vec![Cause::invalid(field, p, "provided port is already allocated")],
            ));
        }
        return Ok(p);
    }
    let span = NODE_PORTS.end() - NODE_PORTS.start() + 1;
    let start = fastrand::u32(0..span);
    for i in 0..span {
        let p = NODE_PORTS.start() + (start + i) % span;
        if used.contains(&p.to_string()) {
            continue;
        }
        if dry_run || claim(store, "nodeports", &p.to_string(), owner).await? {
            return Ok(p);
        }
    }
    Err(ApiError::internal("failed to allocate a nodePort: range is full"))
}
