//! KV.Txn for the shapes Kubernetes and etcdctl use, answered exactly as etcd would.
//!
//! The store writes one key at a time, so a transaction is served when it can be made
//! linearizable on one key: every compare and every operation is on the same single key, and
//! a branch writes it at most once. Such a transaction reads the key, evaluates the compares,
//! and makes its write guarded by the revision it read, retrying from the read when another
//! write came between; the common Kubernetes guards (`mod_revision == R`, "does not exist")
//! go straight to the store's create/update/delete without the read. Without compares, a
//! transaction may also be any number of reads (answered at one revision) or one write.
//! Everything else is refused with an error naming what is unsupported.
use std::collections::HashSet;

use bytes::Bytes;
use tonic::Status;

use super::kv::{self, put_payload, RangeShape};
use super::{empty_key, header, msg, pb_kv, store_status, sub_header, unsupported};
use crate::etcdproto::{
    PbCompare, PbDeleteRequest, PbDeleteResponse, PbPutRequest, PbPutResponse, PbRangeRequest, PbRangeResponse,
    PbResponseOp, PbTargetUnion, PbTxnOpRequest, PbTxnOpResponse, PbTxnRequest, PbTxnRequestOp, PbTxnResponse,
};
use crate::store::{KeyRange, KeyValue, LeaseId, Revision, Store, WriteOutcome};

/// etcd's default `--max-txn-ops`.
const MAX_TXN_OPS: usize = 128;
/// Guarded retries before giving up; each retry means another write to the key succeeded,
/// so reaching this takes a storm of writers on one key.
const MAX_ATTEMPTS: usize = 1000;

/// What a compare inspects, with the operand it compares against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CmpTarget {
    Version(i64),
    Create(i64),
    Mod(i64),
    Value(Vec<u8>),
    Lease(i64),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum CmpResult {
    Equal,
    Greater,
    Less,
    NotEqual,
}

/// One parsed compare on the transaction's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cmp {
    pub target: CmpTarget,
    pub result: CmpResult,
}

impl Cmp {
    fn parse(c: &PbCompare) -> Result<Cmp, Status> {
        let result = match c.result {
            0 => CmpResult::Equal,
            1 => CmpResult::Greater,
            2 => CmpResult::Less,
            3 => CmpResult::NotEqual,
            other => return Err(Status::invalid_argument(format!("etcdserver: unknown compare result {other}"))),
        };
        // As in etcd, an operand of the wrong kind for the target counts as zero (or empty).
        let int = |want: fn(&PbTargetUnion) -> Option<i64>| c.target_union.as_ref().and_then(want).unwrap_or(0);
        let target = match c.target {
            0 => CmpTarget::Version(int(|u| if let PbTargetUnion::Version(v) = u { Some(*v) } else { None })),
            1 => CmpTarget::Create(int(|u| if let PbTargetUnion::CreateRevision(v) = u { Some(*v) } else { None })),
            2 => CmpTarget::Mod(int(|u| if let PbTargetUnion::ModRevision(v) = u { Some(*v) } else { None })),
            3 => CmpTarget::Value(match &c.target_union {
                Some(PbTargetUnion::Value(v)) => v.clone(),
                _ => Vec::new(),
            }),
            4 => CmpTarget::Lease(int(|u| if let PbTargetUnion::Lease(v) = u { Some(*v) } else { None })),
            other => return Err(Status::invalid_argument(format!("etcdserver: unknown compare target {other}"))),
        };
        Ok(Cmp { target, result })
    }

    /// Evaluates the compare against the key's current value (`None`: it does not exist),
    /// with etcd's rules: a missing key has zero revisions, version and lease, and a value
    /// compare on it is false whatever the operator.
    pub(crate) fn holds(&self, kv: Option<&KeyValue>) -> bool {
        use std::cmp::Ordering;
        let ord: Ordering = match (&self.target, kv) {
            (CmpTarget::Value(_), None) => return false,
            (CmpTarget::Value(v), Some(kv)) => kv.value[..].cmp(&v[..]),
            (CmpTarget::Version(v), kv) => kv.map_or(0, |k| k.version).cmp(v),
            (CmpTarget::Create(v), kv) => kv.map_or(0, |k| k.create_revision.0).cmp(v),
            (CmpTarget::Mod(v), kv) => kv.map_or(0, |k| k.mod_revision.0).cmp(v),
            (CmpTarget::Lease(v), kv) => kv.and_then(|k| k.lease).map_or(0, |l| l.0).cmp(v),
        };
        match self.result {
            CmpResult::Equal => ord == Ordering::Equal,
            CmpResult::NotEqual => ord != Ordering::Equal,
            CmpResult::Greater => ord == Ordering::Greater,
            CmpResult::Less => ord == Ordering::Less,
        }
    }
}

/// An operation of a guarded transaction, on its one key.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum KeyOp {
    Read(PbRangeRequest),
    Put(PbPutRequest),
    Delete(PbDeleteRequest),
}

/// A transaction whose compares and operations all concern `key`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Guarded {
    pub key: Vec<u8>,
    pub compares: Vec<Cmp>,
    pub success: Vec<KeyOp>,
    pub failure: Vec<KeyOp>,
}

/// A transaction shape this server can answer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Plan {
    /// No compares, reads only: all answered at one revision.
    Reads(Vec<PbRangeRequest>),
    /// No compares, a single Put.
    Put(PbPutRequest),
    /// No compares, a single DeleteRange (a range is deleted as KV.DeleteRange does).
    Delete(PbDeleteRequest),
    Guarded(Guarded),
}

/// The guarded write a [`Guarded`] transaction can make without reading first.
#[derive(Clone, Debug, PartialEq)]
enum FastPath<'a> {
    Create(&'a PbPutRequest),
    Update(&'a PbPutRequest, Revision),
    Delete(&'a PbDeleteRequest, Revision),
}

impl Guarded {
    fn fast_path(&self) -> Option<FastPath<'_>> {
        let ([cmp], [op]) = (self.compares.as_slice(), self.success.as_slice()) else {
            return None;
        };
        if cmp.result != CmpResult::Equal {
            return None;
        }
        match (op, &cmp.target) {
            (KeyOp::Put(p), _) if p.ignore_value || p.ignore_lease => None,
            (KeyOp::Put(p), CmpTarget::Mod(0) | CmpTarget::Version(0) | CmpTarget::Create(0)) => {
                Some(FastPath::Create(p))
            }
            (KeyOp::Put(p), CmpTarget::Mod(r)) if *r > 0 => Some(FastPath::Update(p, Revision(*r))),
            (KeyOp::Delete(d), CmpTarget::Mod(r)) if *r > 0 => Some(FastPath::Delete(d, Revision(*r))),
            _ => None,
        }
    }
}

/// The checks etcd makes on any transaction before running it.
fn check_etcd_rules(req: &PbTxnRequest) -> Result<(), Status> {
    if req.compare.len().max(req.success.len()).max(req.failure.len()) > MAX_TXN_OPS {
        return Err(Status::invalid_argument(msg::TOO_MANY_OPS));
    }
    if req.compare.iter().any(|c| c.key.is_empty()) {
        return Err(empty_key());
    }
    for branch in [&req.success, &req.failure] {
        for op in branch {
            match &op.request {
                Some(PbTxnOpRequest::RequestRange(r)) if r.key.is_empty() => return Err(empty_key()),
                Some(PbTxnOpRequest::RequestPut(p)) => kv::check_put(p)?,
                Some(PbTxnOpRequest::RequestDeleteRange(d)) if d.key.is_empty() => return Err(empty_key()),
                Some(PbTxnOpRequest::RequestTxn(_)) => return Err(unsupported("a Txn nested in a Txn")),
                None => return Err(unsupported("an empty Txn operation")),
                _ => {}
            }
        }
        // A key may not be written twice in one branch, nor put and deleted.
        let deletes: Vec<KeyRange> = branch
            .iter()
            .filter_map(|op| match &op.request {
                Some(PbTxnOpRequest::RequestDeleteRange(d)) => Some(KeyRange::from_etcd(&d.key, &d.range_end)),
                _ => None,
            })
            .collect();
        let mut puts = HashSet::new();
        for op in branch {
            if let Some(PbTxnOpRequest::RequestPut(p)) = &op.request {
                if !puts.insert(&p.key[..]) || deletes.iter().any(|d| d.contains(&p.key)) {
                    return Err(Status::invalid_argument(msg::DUPLICATE_KEY));
                }
            }
        }
    }
    Ok(())
}

/// The operations of a branch as operations on `key`, if they all are.
fn key_ops(key: &[u8], ops: &[PbTxnRequestOp]) -> Result<Vec<KeyOp>, Status> {
    let other_key = || unsupported("a Txn whose operations touch keys other than the one it compares (or ranges)");
    ops.iter()
        .map(|op| match &op.request {
            Some(PbTxnOpRequest::RequestRange(r)) => {
                if r.key != key || !r.range_end.is_empty() {
                    return Err(other_key());
                }
                if r.revision > 0 {
                    return Err(unsupported("a Range at a past revision inside a Txn that writes or compares"));
                }
                Ok(KeyOp::Read(r.clone()))
            }
            Some(PbTxnOpRequest::RequestPut(p)) if p.key == key => Ok(KeyOp::Put(p.clone())),
            Some(PbTxnOpRequest::RequestDeleteRange(d)) if d.key == key && d.range_end.is_empty() => {
                Ok(KeyOp::Delete(d.clone()))
            }
            Some(PbTxnOpRequest::RequestTxn(_)) => Err(unsupported("a Txn nested in a Txn")),
            None => Err(unsupported("an empty Txn operation")),
            _ => Err(other_key()),
        })
        .collect()
}

/// The key every operation of `ops` is on, if they share one (and are not ranges).
fn single_key(ops: &[PbTxnRequestOp]) -> Option<&[u8]> {
    let mut key: Option<&[u8]> = None;
    for op in ops {
        let k = match &op.request {
            Some(PbTxnOpRequest::RequestRange(r)) if r.range_end.is_empty() => &r.key[..],
            Some(PbTxnOpRequest::RequestPut(p)) => &p.key[..],
            Some(PbTxnOpRequest::RequestDeleteRange(d)) if d.range_end.is_empty() => &d.key[..],
            _ => return None,
        };
        match key {
            Some(prev) if prev != k => return None,
            _ => key = Some(k),
        }
    }
    key
}

/// Classifies a transaction, or says why it cannot be served.
pub(crate) fn plan(req: PbTxnRequest) -> Result<Plan, Status> {
    check_etcd_rules(&req)?;
    if req.compare.is_empty() {
        // The failure branch never runs without compares; it was only checked.
        let ranges: Option<Vec<PbRangeRequest>> = req
            .success
            .iter()
            .map(|op| match &op.request {
                Some(PbTxnOpRequest::RequestRange(r)) => Some(r.clone()),
                _ => None,
            })
            .collect();
        if let Some(ranges) = ranges {
            return Ok(Plan::Reads(ranges));
        }
        if let [op] = req.success.as_slice() {
            match &op.request {
                Some(PbTxnOpRequest::RequestPut(p)) => return Ok(Plan::Put(p.clone())),
                Some(PbTxnOpRequest::RequestDeleteRange(d)) => return Ok(Plan::Delete(d.clone())),
                _ => {}
            }
        }
        let Some(key) = single_key(&req.success) else {
            return Err(unsupported("a Txn without compares that writes and also touches other keys or ranges"));
        };
        let key = key.to_vec();
        let success = key_ops(&key, &req.success)?;
        return Ok(Plan::Guarded(Guarded { key, compares: Vec::new(), success, failure: Vec::new() }));
    }
    if req.compare.iter().any(|c| !c.range_end.is_empty()) {
        return Err(unsupported("a Txn compare over a key range"));
    }
    let key = req.compare[0].key.clone();
    if req.compare.iter().any(|c| c.key != key) {
        return Err(unsupported("a Txn comparing more than one key"));
    }
    let compares = req.compare.iter().map(Cmp::parse).collect::<Result<Vec<_>, _>>()?;
    let success = key_ops(&key, &req.success)?;
    let failure = key_ops(&key, &req.failure)?;
    Ok(Plan::Guarded(Guarded { key, compares, success, failure }))
}

/// Serves a Txn.
pub(crate) async fn txn(store: &dyn Store, req: PbTxnRequest) -> Result<PbTxnResponse, Status> {
    match plan(req)? {
        Plan::Reads(ranges) => reads(store, &ranges).await,
        Plan::Put(p) => {
            let (revision, prev) = kv::put_write(store, &p).await?;
            let put = put_response(&p, revision, prev);
            Ok(PbTxnResponse { header: header(revision), succeeded: true, responses: vec![op_response(put)] })
        }
        Plan::Delete(d) => {
            let mut del = kv::delete_range(store, &d).await?;
            let revision = Revision(del.header.as_ref().map_or(0, |h| h.revision));
            del.header = sub_header(revision);
            Ok(PbTxnResponse { header: header(revision), succeeded: true, responses: vec![op_response(del)] })
        }
        Plan::Guarded(g) => guarded(store, &g).await,
    }
}

async fn reads(store: &dyn Store, ranges: &[PbRangeRequest]) -> Result<PbTxnResponse, Status> {
    let mut at = None;
    let mut responses = Vec::with_capacity(ranges.len());
    for r in ranges {
        let mut resp = kv::range(store, r, at).await?;
        let revision = Revision(resp.header.as_ref().map_or(0, |h| h.revision));
        if at.is_none() && r.revision <= 0 {
            at = Some(revision);
        }
        resp.header = sub_header(revision);
        responses.push(op_response(resp));
    }
    let revision = match at {
        Some(rev) => rev,
        None => store.current_revision().await.map_err(store_status)?,
    };
    Ok(PbTxnResponse { header: header(revision), succeeded: true, responses })
}

async fn guarded(store: &dyn Store, g: &Guarded) -> Result<PbTxnResponse, Status> {
    let key = Bytes::copy_from_slice(&g.key);
    if let Some(fast) = g.fast_path() {
        let outcome = match fast {
            FastPath::Create(p) => {
                let (value, lease) = put_payload(p, None)?;
                store.create(key.clone(), value, lease).await
            }
            FastPath::Update(p, expected) => {
                let (value, lease) = put_payload(p, None)?;
                store.update(key.clone(), value, expected, lease).await
            }
            FastPath::Delete(_, expected) => store.delete(key.clone(), Some(expected)).await,
        };
        if let WriteOutcome::Applied { revision, prev } = outcome.map_err(store_status)? {
            let op = &g.success[0];
            let response = match op {
                KeyOp::Delete(_) => op_delete_response(op, revision, prev),
                _ => op_put_response(op, revision, prev),
            };
            return Ok(PbTxnResponse { header: header(revision), succeeded: true, responses: vec![response] });
        }
        // The guard failed: the general path reads the key to answer the failure branch
        // (or finds the guard holding again, if the key changed back meanwhile).
    }
    for _ in 0..MAX_ATTEMPTS {
        let (revision, current) = store.get(&g.key, None).await.map_err(store_status)?;
        let succeeded = g.compares.iter().all(|c| c.holds(current.as_ref()));
        let ops = if succeeded { &g.success } else { &g.failure };
        if let Some((revision, responses)) = run_branch(store, &key, ops, revision, current).await? {
            return Ok(PbTxnResponse { header: header(revision), succeeded, responses });
        }
    }
    Err(Status::unavailable(format!(
        "k3rs etcd API: Txn on {:?} kept conflicting with concurrent writes; retry it",
        String::from_utf8_lossy(&g.key)
    )))
}

/// Runs a branch over the key as read at `revision` (`current`); `None` when its write
/// found the key changed since, and nothing was written.
async fn run_branch(
    store: &dyn Store,
    key: &Bytes,
    ops: &[KeyOp],
    mut revision: Revision,
    mut current: Option<KeyValue>,
) -> Result<Option<(Revision, Vec<PbResponseOp>)>, Status> {
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            KeyOp::Read(r) => responses.push(op_response(read_key(r, current.clone(), revision)?)),
            KeyOp::Put(p) => {
                let (value, lease) = put_payload(p, current.as_ref())?;
                let outcome = match &current {
                    Some(kv) => store.update(key.clone(), value.clone(), kv.mod_revision, lease).await,
                    None => store.create(key.clone(), value.clone(), lease).await,
                };
                match outcome.map_err(store_status)? {
                    WriteOutcome::Applied { revision: written, prev } => {
                        current = Some(after_put(key.clone(), value, lease, written, prev.as_ref()));
                        revision = written;
                        responses.push(op_put_response(op, written, prev));
                    }
                    WriteOutcome::Failed { .. } => return Ok(None),
                }
            }
            KeyOp::Delete(_) => match &current {
                Some(kv) => match store.delete(key.clone(), Some(kv.mod_revision)).await.map_err(store_status)? {
                    WriteOutcome::Applied { revision: written, prev } => {
                        current = None;
                        revision = written;
                        responses.push(op_delete_response(op, written, prev));
                    }
                    WriteOutcome::Failed { .. } => return Ok(None),
                },
                None => {
                    let del = PbDeleteResponse { header: sub_header(revision), deleted: 0, prev_kvs: Vec::new() };
                    responses.push(op_response(del));
                }
            },
        }
    }
    Ok(Some((revision, responses)))
}

/// The key as a put leaves it, derived the way the store derives it.
fn after_put(
    key: Bytes,
    value: Bytes,
    lease: Option<LeaseId>,
    revision: Revision,
    prev: Option<&KeyValue>,
) -> KeyValue {
    KeyValue {
        key,
        value,
        create_revision: prev.map_or(revision, |p| p.create_revision),
        mod_revision: revision,
        version: prev.map_or(1, |p| p.version + 1),
        lease,
    }
}

/// A Range on the transaction's key, answered from the key's value at `revision`.
fn read_key(r: &PbRangeRequest, current: Option<KeyValue>, revision: Revision) -> Result<PbRangeResponse, Status> {
    let shape = RangeShape::from_request(r)?;
    let count = i64::from(current.is_some());
    let (kvs, more) = shape.apply(current.into_iter().collect());
    Ok(PbRangeResponse { header: sub_header(revision), kvs: kvs.into_iter().map(pb_kv).collect(), more, count })
}

fn put_response(p: &PbPutRequest, revision: Revision, prev: Option<KeyValue>) -> PbPutResponse {
    PbPutResponse { header: sub_header(revision), prev_kv: if p.prev_kv { prev.map(pb_kv) } else { None } }
}

fn op_put_response(op: &KeyOp, revision: Revision, prev: Option<KeyValue>) -> PbResponseOp {
    let want_prev = matches!(op, KeyOp::Put(p) if p.prev_kv);
    op_response(PbPutResponse { header: sub_header(revision), prev_kv: if want_prev { prev.map(pb_kv) } else { None } })
}

fn op_delete_response(op: &KeyOp, revision: Revision, prev: Option<KeyValue>) -> PbResponseOp {
    let want_prev = matches!(op, KeyOp::Delete(d) if d.prev_kv);
    let prev_kvs = if want_prev { prev.into_iter().map(pb_kv).collect() } else { Vec::new() };
    op_response(PbDeleteResponse { header: sub_header(revision), deleted: 1, prev_kvs })
}

fn op_response(resp: impl IntoOpResponse) -> PbResponseOp {
    PbResponseOp { response: Some(resp.into_op_response()) }
}

/// The responses a Txn nests.
trait IntoOpResponse {
    fn into_op_response(self) -> PbTxnOpResponse;
}

impl IntoOpResponse for PbRangeResponse {
    fn into_op_response(self) -> PbTxnOpResponse {
        PbTxnOpResponse::ResponseRange(self)
    }
}

impl IntoOpResponse for PbPutResponse {
    fn into_op_response(self) -> PbTxnOpResponse {
        PbTxnOpResponse::ResponsePut(self)
    }
}

impl IntoOpResponse for PbDeleteResponse {
    fn into_op_response(self) -> PbTxnOpResponse {
        PbTxnOpResponse::ResponseDeleteRange(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn get(key: &str) -> PbTxnRequestOp {
        PbTxnRequestOp {
            request: Some(PbTxnOpRequest::RequestRange(PbRangeRequest { key: key.into(), ..Default::default() })),
        }
    }

    fn prefix_get(key: &str) -> PbTxnRequestOp {
        let end = crate::store::prefix_end(key.as_bytes()).expect("prefix end").to_vec();
        PbTxnRequestOp {
            request: Some(PbTxnOpRequest::RequestRange(PbRangeRequest {
                key: key.into(),
                range_end: end,
                ..Default::default()
            })),
        }
    }

    fn put(key: &str, value: &str) -> PbTxnRequestOp {
        PbTxnRequestOp {
            request: Some(PbTxnOpRequest::RequestPut(PbPutRequest {
                key: key.into(),
                value: value.into(),
                ..Default::default()
            })),
        }
    }

    fn del(key: &str) -> PbTxnRequestOp {
        PbTxnRequestOp {
            request: Some(PbTxnOpRequest::RequestDeleteRange(PbDeleteRequest {
                key: key.into(),
                ..Default::default()
            })),
        }
    }

    fn cmp(key: &str, target: i32, result: i32, operand: PbTargetUnion) -> PbCompare {
        PbCompare { result, target, key: key.into(), range_end: Vec::new(), target_union: Some(operand) }
    }

    fn mod_eq(key: &str, rev: i64) -> PbCompare {
        cmp(key, 2, 0, PbTargetUnion::ModRevision(rev))
    }

    fn txn(compare: Vec<PbCompare>, success: Vec<PbTxnRequestOp>, failure: Vec<PbTxnRequestOp>) -> PbTxnRequest {
        PbTxnRequest { compare, success, failure }
    }

    fn kv(version: i64, create: i64, modrev: i64, value: &str, lease: Option<i64>) -> KeyValue {
        KeyValue {
            key: "k".into(),
            value: Bytes::copy_from_slice(value.as_bytes()),
            create_revision: Revision(create),
            mod_revision: Revision(modrev),
            version,
            lease: lease.map(LeaseId),
        }
    }

    fn guarded(req: PbTxnRequest) -> Guarded {
        match plan(req).expect("supported") {
            Plan::Guarded(g) => g,
            other => panic!("expected a guarded plan, got {other:?}"),
        }
    }

    #[test]
    fn kubernetes_create_goes_straight_to_create() {
        let g = guarded(txn(vec![mod_eq("/registry/pods/a", 0)], vec![put("/registry/pods/a", "v")], vec![]));
        assert_eq!(g.key, b"/registry/pods/a");
        assert!(matches!(g.fast_path(), Some(FastPath::Create(_))));
        assert!(g.failure.is_empty());
    }

    #[test]
    fn kubernetes_guarded_update_and_delete_use_the_revision() {
        let g = guarded(txn(vec![mod_eq("/r/a", 17)], vec![put("/r/a", "v2")], vec![get("/r/a")]));
        assert!(matches!(g.fast_path(), Some(FastPath::Update(_, Revision(17)))));
        assert!(matches!(g.failure.as_slice(), [KeyOp::Read(_)]));

        let g = guarded(txn(vec![mod_eq("/r/a", 17)], vec![del("/r/a")], vec![get("/r/a")]));
        assert!(matches!(g.fast_path(), Some(FastPath::Delete(_, Revision(17)))));
    }

    #[test]
    fn version_and_create_zero_mean_create() {
        for target in [(0, PbTargetUnion::Version(0)), (1, PbTargetUnion::CreateRevision(0))] {
            let g = guarded(txn(vec![cmp("k", target.0, 0, target.1)], vec![put("k", "v")], vec![get("k")]));
            assert!(matches!(g.fast_path(), Some(FastPath::Create(_))));
        }
    }

    #[test]
    fn other_compares_take_the_read_check_write_path() {
        // kube-apiserver's compaction bookkeeping: Version(compact_rev_key) == t.
        let g = guarded(txn(
            vec![cmp("compact_rev_key", 0, 0, PbTargetUnion::Version(4))],
            vec![put("compact_rev_key", "9")],
            vec![get("compact_rev_key")],
        ));
        assert_eq!(g.fast_path(), None);
        let g = guarded(txn(vec![cmp("k", 2, 3, PbTargetUnion::ModRevision(5))], vec![put("k", "v")], vec![]));
        assert_eq!(g.fast_path(), None);
        let g = guarded(txn(
            vec![mod_eq("k", 5), cmp("k", 3, 0, PbTargetUnion::Value(b"x".to_vec()))],
            vec![put("k", "v")],
            vec![],
        ));
        assert_eq!(g.compares.len(), 2);
        assert_eq!(g.fast_path(), None);
        // A read before the write needs the value as it was.
        let g = guarded(txn(vec![mod_eq("k", 5)], vec![get("k"), put("k", "v")], vec![]));
        assert_eq!(g.fast_path(), None);
    }

    #[test]
    fn without_compares_reads_and_single_writes_are_planned_directly() {
        let p = plan(txn(vec![], vec![get("a"), prefix_get("b/")], vec![])).expect("reads");
        assert!(matches!(p, Plan::Reads(ref r) if r.len() == 2));
        assert_eq!(plan(txn(vec![], vec![], vec![])).expect("empty"), Plan::Reads(Vec::new()));
        assert!(matches!(plan(txn(vec![], vec![put("a", "1")], vec![])), Ok(Plan::Put(_))));
        assert!(matches!(plan(txn(vec![], vec![del("a")], vec![])), Ok(Plan::Delete(_))));
        let g = guarded(txn(vec![], vec![put("a", "1"), get("a")], vec![]));
        assert!(g.compares.is_empty());
        assert_eq!(g.success.len(), 2);
    }

    #[test]
    fn shapes_over_several_keys_are_refused_clearly() {
        let cases = [
            txn(vec![mod_eq("a", 1), mod_eq("b", 1)], vec![put("a", "1")], vec![]),
            txn(vec![mod_eq("a", 1)], vec![put("b", "1")], vec![]),
            txn(vec![mod_eq("a", 1)], vec![put("a", "1")], vec![get("b")]),
            txn(vec![mod_eq("a", 1)], vec![put("a", "1")], vec![prefix_get("a")]),
            txn(vec![PbCompare { range_end: b"b".to_vec(), ..mod_eq("a", 1) }], vec![put("a", "1")], vec![]),
            txn(vec![], vec![put("a", "1"), put("b", "2")], vec![]),
            txn(vec![], vec![put("a", "1"), get("b")], vec![]),
            txn(
                vec![],
                vec![PbTxnRequestOp { request: Some(PbTxnOpRequest::RequestTxn(PbTxnRequest::default())) }],
                vec![],
            ),
        ];
        for req in cases {
            let err = plan(req.clone()).expect_err("unsupported");
            assert_eq!(err.code(), Code::Unimplemented, "{req:?}: {err:?}");
            assert!(err.message().contains("not supported"), "{}", err.message());
        }
        let mut past = get("a");
        if let Some(PbTxnOpRequest::RequestRange(r)) = &mut past.request {
            r.revision = 3;
        }
        let err = plan(txn(vec![mod_eq("a", 1)], vec![put("a", "1")], vec![past])).expect_err("past read");
        assert_eq!(err.code(), Code::Unimplemented);
    }

    #[test]
    fn etcd_validation_comes_first() {
        let err = plan(txn(vec![mod_eq("a", 1)], vec![put("a", "1"), put("a", "2")], vec![])).expect_err("dup");
        assert_eq!(
            (err.code(), err.message()),
            (Code::InvalidArgument, "etcdserver: duplicate key given in txn request")
        );
        let err = plan(txn(vec![], vec![del("a"), put("a", "2")], vec![])).expect_err("dup");
        assert_eq!(err.message(), "etcdserver: duplicate key given in txn request");
        let err = plan(txn(vec![mod_eq("", 1)], vec![], vec![])).expect_err("empty key");
        assert_eq!(err.message(), "etcdserver: key is not provided");
        let err = plan(txn(vec![], vec![get("")], vec![])).expect_err("empty key");
        assert_eq!(err.message(), "etcdserver: key is not provided");
        let many = (0..129).map(|i| get(&format!("k{i}"))).collect();
        let err = plan(txn(vec![], many, vec![])).expect_err("too many");
        assert_eq!(err.message(), "etcdserver: too many operations in txn request");
        let err = plan(txn(vec![cmp("a", 9, 0, PbTargetUnion::Version(1))], vec![], vec![])).expect_err("target");
        assert_eq!(err.code(), Code::InvalidArgument);
        // Two deletes of one key are allowed, as in etcd; the second deletes nothing.
        assert!(plan(txn(vec![mod_eq("a", 1)], vec![del("a"), del("a")], vec![])).is_ok());
    }

    #[test]
    fn compares_follow_etcd_semantics() {
        let c = |target: i32, result: i32, operand: PbTargetUnion| {
            Cmp::parse(&cmp("k", target, result, operand)).expect("parse")
        };
        let present = kv(3, 4, 9, "abc", Some(7));
        let table: Vec<(Cmp, Option<&KeyValue>, bool)> = vec![
            (c(2, 0, PbTargetUnion::ModRevision(9)), Some(&present), true),
            (c(2, 0, PbTargetUnion::ModRevision(8)), Some(&present), false),
            (c(2, 0, PbTargetUnion::ModRevision(0)), None, true),
            (c(2, 3, PbTargetUnion::ModRevision(0)), Some(&present), true),
            (c(2, 1, PbTargetUnion::ModRevision(8)), Some(&present), true),
            (c(2, 2, PbTargetUnion::ModRevision(8)), Some(&present), false),
            (c(0, 0, PbTargetUnion::Version(3)), Some(&present), true),
            (c(0, 0, PbTargetUnion::Version(0)), None, true),
            (c(0, 2, PbTargetUnion::Version(1)), None, true),
            (c(1, 0, PbTargetUnion::CreateRevision(4)), Some(&present), true),
            (c(1, 1, PbTargetUnion::CreateRevision(0)), None, false),
            (c(3, 0, PbTargetUnion::Value(b"abc".to_vec())), Some(&present), true),
            (c(3, 1, PbTargetUnion::Value(b"abb".to_vec())), Some(&present), true),
            (c(3, 3, PbTargetUnion::Value(b"x".to_vec())), None, false),
            (c(3, 0, PbTargetUnion::Value(Vec::new())), None, false),
            (c(4, 0, PbTargetUnion::Lease(7)), Some(&present), true),
            (c(4, 0, PbTargetUnion::Lease(0)), None, true),
            // An operand of another kind counts as zero.
            (c(2, 0, PbTargetUnion::Version(9)), None, true),
        ];
        for (cmp, kv, want) in table {
            assert_eq!(cmp.holds(kv), want, "{cmp:?} on {kv:?}");
        }
    }

    #[test]
    fn reads_inside_a_guarded_txn_see_the_key_as_of_their_place() {
        let current = kv(2, 3, 5, "val", None);
        let r = PbRangeRequest { key: "k".into(), ..Default::default() };
        let resp = read_key(&r, Some(current.clone()), Revision(8)).expect("read");
        assert_eq!((resp.count, resp.kvs.len(), resp.header.map(|h| h.revision)), (1, 1, Some(8)));
        let r = PbRangeRequest { key: "k".into(), count_only: true, ..Default::default() };
        let resp = read_key(&r, Some(current.clone()), Revision(8)).expect("read");
        assert_eq!((resp.count, resp.kvs.len()), (1, 0));
        let resp = read_key(&r, None, Revision(8)).expect("read");
        assert_eq!((resp.count, resp.kvs.len()), (0, 0));

        let after = after_put("k".into(), "new".into(), None, Revision(9), Some(&current));
        assert_eq!((after.create_revision, after.mod_revision, after.version), (Revision(3), Revision(9), 3));
        let created = after_put("k".into(), "new".into(), Some(LeaseId(4)), Revision(9), None);
        assert_eq!((created.create_revision, created.version, created.lease), (Revision(9), 1, Some(LeaseId(4))));
    }
}
