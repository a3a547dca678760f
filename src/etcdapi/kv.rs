//! The KV service: Range, Put, DeleteRange, Txn (in [`super::txn`]) and Compact.
//!
//! Range options the store has no notion of (sorting other than by key, the min/max
//! revision filters) are applied here to the whole range read at one revision, as etcd
//! itself does, so every option etcd accepts gets etcd's answer.
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use tonic::{Request, Response, Status};

use super::{empty_key, header, msg, pb_kv, store_status, Api};
use crate::etcdproto::{
    PbCompactionRequest, PbCompactionResponse, PbDeleteRequest, PbDeleteResponse, PbKvService, PbPutRequest,
    PbPutResponse, PbRangeRequest, PbRangeResponse, PbRangeStreamResponse, PbTxnRequest, PbTxnResponse,
};
use crate::store::{KeyRange, KeyValue, LeaseId, RangeOptions, Revision, Store, WriteOutcome};

pub(crate) struct KvService {
    api: Api,
}

impl KvService {
    pub(crate) fn new(api: Api) -> Self {
        KvService { api }
    }
}

#[tonic::async_trait]
impl PbKvService for KvService {
    async fn range(&self, request: Request<PbRangeRequest>) -> Result<Response<PbRangeResponse>, Status> {
        let resp = range(&*self.api.store, &request.into_inner(), None).await?;
        Ok(Response::new(resp))
    }

    type RangeStreamStream = Pin<Box<dyn Stream<Item = Result<PbRangeStreamResponse, Status>> + Send>>;

    async fn range_stream(
        &self,
        _request: Request<PbRangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        Err(super::unsupported("KV.RangeStream (use KV.Range with a limit)"))
    }

    async fn put(&self, request: Request<PbPutRequest>) -> Result<Response<PbPutResponse>, Status> {
        let resp = put(&*self.api.store, &request.into_inner()).await?;
        Ok(Response::new(resp))
    }

    async fn delete_range(&self, request: Request<PbDeleteRequest>) -> Result<Response<PbDeleteResponse>, Status> {
        let resp = delete_range(&*self.api.store, &request.into_inner()).await?;
        Ok(Response::new(resp))
    }

    async fn txn(&self, request: Request<PbTxnRequest>) -> Result<Response<PbTxnResponse>, Status> {
        let resp = super::txn::txn(&*self.api.store, request.into_inner()).await?;
        Ok(Response::new(resp))
    }

    async fn compact(&self, request: Request<PbCompactionRequest>) -> Result<Response<PbCompactionResponse>, Status> {
        let store = &*self.api.store;
        // `physical` needs no wait: the store's compaction is done when it returns.
        store.compact(Revision(request.into_inner().revision)).await.map_err(store_status)?;
        let revision = store.current_revision().await.map_err(store_status)?;
        Ok(Response::new(PbCompactionResponse { header: header(revision) }))
    }
}

/// etcd's `RangeRequest.SortOrder` values.
const SORT_NONE: i32 = 0;
const SORT_ASCEND: i32 = 1;
const SORT_DESCEND: i32 = 2;

/// etcd's `RangeRequest.SortTarget` values.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum SortTarget {
    Key,
    Version,
    Create,
    Mod,
    Value,
}

impl SortTarget {
    fn from_i32(v: i32) -> Option<Self> {
        Some(match v {
            0 => SortTarget::Key,
            1 => SortTarget::Version,
            2 => SortTarget::Create,
            3 => SortTarget::Mod,
            4 => SortTarget::Value,
            _ => return None,
        })
    }
}

/// How a range answer is cut from the key-values a read found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RangeShape {
    /// A sort other than the store's own key order: target and descending.
    pub sort: Option<(SortTarget, bool)>,
    pub min_mod: i64,
    pub max_mod: i64,
    pub min_create: i64,
    pub max_create: i64,
    pub limit: Option<usize>,
    pub keys_only: bool,
    pub count_only: bool,
}

impl RangeShape {
    /// Validates the options of `req`, normalising the sort as etcd does: no order with a
    /// target other than the key means ascending; ascending by key is the natural order.
    pub(crate) fn from_request(req: &PbRangeRequest) -> Result<Self, Status> {
        let target =
            SortTarget::from_i32(req.sort_target).ok_or_else(|| Status::invalid_argument(msg::INVALID_SORT))?;
        let sort = match (req.sort_order, target) {
            (SORT_NONE | SORT_ASCEND, SortTarget::Key) => None,
            (SORT_NONE | SORT_ASCEND, t) => Some((t, false)),
            (SORT_DESCEND, t) => Some((t, true)),
            _ => return Err(Status::invalid_argument(msg::INVALID_SORT)),
        };
        Ok(RangeShape {
            sort,
            min_mod: req.min_mod_revision,
            max_mod: req.max_mod_revision,
            min_create: req.min_create_revision,
            max_create: req.max_create_revision,
            limit: (req.limit > 0).then(|| usize::try_from(req.limit).unwrap_or(usize::MAX)),
            keys_only: req.keys_only,
            count_only: req.count_only,
        })
    }

    fn filters(&self) -> bool {
        self.min_mod != 0 || self.max_mod != 0 || self.min_create != 0 || self.max_create != 0
    }

    /// True when the answer needs every key of the range, not just the first `limit`.
    pub(crate) fn needs_whole_range(&self) -> bool {
        !self.count_only && (self.sort.is_some() || self.filters())
    }

    /// Filters, sorts and truncates `kvs` (in key order); returns them and whether the
    /// limit left some out. Counting is the caller's: etcd counts before filtering.
    pub(crate) fn apply(&self, mut kvs: Vec<KeyValue>) -> (Vec<KeyValue>, bool) {
        if self.count_only {
            return (Vec::new(), false);
        }
        kvs.retain(|kv| {
            (self.max_mod == 0 || kv.mod_revision.0 <= self.max_mod)
                && (self.min_mod == 0 || kv.mod_revision.0 >= self.min_mod)
                && (self.max_create == 0 || kv.create_revision.0 <= self.max_create)
                && (self.min_create == 0 || kv.create_revision.0 >= self.min_create)
        });
        if let Some((target, descending)) = self.sort {
            // A stable sort keeps key order among equals; etcd leaves their order unspecified.
            match target {
                SortTarget::Key => kvs.sort_by(|a, b| a.key.cmp(&b.key)),
                SortTarget::Version => kvs.sort_by_key(|kv| kv.version),
                SortTarget::Create => kvs.sort_by_key(|kv| kv.create_revision),
                SortTarget::Mod => kvs.sort_by_key(|kv| kv.mod_revision),
                SortTarget::Value => kvs.sort_by(|a, b| a.value.cmp(&b.value)),
            }
            if descending {
                kvs.reverse();
            }
        }
        let mut more = false;
        if let Some(limit) = self.limit {
            if kvs.len() > limit {
                kvs.truncate(limit);
                more = true;
            }
        }
        if self.keys_only {
            for kv in &mut kvs {
                kv.value = Bytes::new();
            }
        }
        (kvs, more)
    }
}

/// Serves a Range. `at` is the revision to read at when the request names none (a Txn
/// reads all its ranges at one revision).
pub(crate) async fn range(
    store: &dyn Store,
    req: &PbRangeRequest,
    at: Option<Revision>,
) -> Result<PbRangeResponse, Status> {
    if req.key.is_empty() {
        return Err(empty_key());
    }
    let shape = RangeShape::from_request(req)?;
    let keys = KeyRange::from_etcd(&req.key, &req.range_end);
    let revision = if req.revision > 0 { Some(Revision(req.revision)) } else { at };
    let (revision, kvs, more, count) = if shape.count_only {
        let opts = RangeOptions { revision, count_only: true, ..Default::default() };
        let res = store.range(&keys, opts).await.map_err(store_status)?;
        (res.revision, Vec::new(), false, res.count)
    } else if shape.needs_whole_range() {
        let by_value = matches!(shape.sort, Some((SortTarget::Value, _)));
        let opts = RangeOptions { revision, keys_only: shape.keys_only && !by_value, ..Default::default() };
        let res = store.range(&keys, opts).await.map_err(store_status)?;
        let (kvs, more) = shape.apply(res.kvs);
        (res.revision, kvs, more, res.count)
    } else {
        let opts = RangeOptions { revision, limit: shape.limit, keys_only: shape.keys_only, count_only: false };
        let res = store.range(&keys, opts).await.map_err(store_status)?;
        (res.revision, res.kvs, res.more, res.count)
    };
    // Like etcd, a read of the past is stamped with the revision current when it ran.
    let revision =
        if req.revision > 0 { store.current_revision().await.map_err(store_status)?.max(revision) } else { revision };
    Ok(PbRangeResponse { header: header(revision), kvs: kvs.into_iter().map(pb_kv).collect(), more, count })
}

pub(crate) fn lease_of(id: i64) -> Option<LeaseId> {
    (id != 0).then_some(LeaseId(id))
}

/// The checks etcd makes on a Put before anything else.
pub(crate) fn check_put(req: &PbPutRequest) -> Result<(), Status> {
    if req.key.is_empty() {
        return Err(empty_key());
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(Status::invalid_argument(msg::VALUE_PROVIDED));
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(Status::invalid_argument(msg::LEASE_PROVIDED));
    }
    Ok(())
}

/// The value and lease a Put writes over `current` (the key as it is now), honouring
/// `ignore_value` and `ignore_lease`, which keep the current ones and need the key to exist.
pub(crate) fn put_payload(req: &PbPutRequest, current: Option<&KeyValue>) -> Result<(Bytes, Option<LeaseId>), Status> {
    if (req.ignore_value || req.ignore_lease) && current.is_none() {
        return Err(Status::invalid_argument(msg::KEY_NOT_FOUND));
    }
    let value = match current {
        Some(kv) if req.ignore_value => kv.value.clone(),
        _ => Bytes::copy_from_slice(&req.value),
    };
    let lease = match current {
        Some(kv) if req.ignore_lease => kv.lease,
        _ => lease_of(req.lease),
    };
    Ok((value, lease))
}

/// Writes a Put; returns the write's revision and the key's previous value.
pub(crate) async fn put_write(store: &dyn Store, req: &PbPutRequest) -> Result<(Revision, Option<KeyValue>), Status> {
    check_put(req)?;
    let key = Bytes::copy_from_slice(&req.key);
    if !req.ignore_value && !req.ignore_lease {
        let (value, lease) = put_payload(req, None)?;
        return match store.put(key, value, lease).await.map_err(store_status)? {
            WriteOutcome::Applied { revision, prev } => Ok((revision, prev)),
            WriteOutcome::Failed { .. } => {
                Err(Status::internal("etcdserver: unconditional put was refused by the store"))
            }
        };
    }
    // Keeping the current value or lease is a read and a write guarded by what was read,
    // retried until no other write came between them.
    loop {
        let (_, current) = store.get(&req.key, None).await.map_err(store_status)?;
        let (value, lease) = put_payload(req, current.as_ref())?;
        let Some(current) = current else {
            return Err(Status::invalid_argument(msg::KEY_NOT_FOUND));
        };
        match store.update(key.clone(), value, current.mod_revision, lease).await.map_err(store_status)? {
            WriteOutcome::Applied { revision, prev } => return Ok((revision, prev)),
            WriteOutcome::Failed { .. } => continue,
        }
    }
}

pub(crate) async fn put(store: &dyn Store, req: &PbPutRequest) -> Result<PbPutResponse, Status> {
    let (revision, prev) = put_write(store, req).await?;
    Ok(PbPutResponse { header: header(revision), prev_kv: if req.prev_kv { prev.map(pb_kv) } else { None } })
}

/// Serves a DeleteRange: the store deletes the whole range in one request; the header
/// carries the revision of the last delete (or the current revision when nothing was deleted).
pub(crate) async fn delete_range(store: &dyn Store, req: &PbDeleteRequest) -> Result<PbDeleteResponse, Status> {
    if req.key.is_empty() {
        return Err(empty_key());
    }
    let keys = KeyRange::from_etcd(&req.key, &req.range_end);
    let done = store.delete_range(&keys).await.map_err(store_status)?;
    let deleted = i64::try_from(done.prev.len()).unwrap_or(i64::MAX);
    let prev_kvs = if req.prev_kv { done.prev.into_iter().map(pb_kv).collect() } else { Vec::new() };
    Ok(PbDeleteResponse { header: header(done.revision), deleted, prev_kvs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn kv(key: &str, value: &str, create: i64, modrev: i64, version: i64) -> KeyValue {
        KeyValue {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
            create_revision: Revision(create),
            mod_revision: Revision(modrev),
            version,
            lease: None,
        }
    }

    fn keys(kvs: &[KeyValue]) -> Vec<&str> {
        kvs.iter().map(|kv| std::str::from_utf8(&kv.key).expect("utf8")).collect()
    }

    fn sample() -> Vec<KeyValue> {
        vec![kv("a", "3", 2, 9, 4), kv("b", "1", 5, 5, 1), kv("c", "2", 3, 7, 2)]
    }

    #[test]
    fn key_order_needs_no_sort() {
        for order in [SORT_NONE, SORT_ASCEND] {
            let req = PbRangeRequest { key: b"a".to_vec(), sort_order: order, sort_target: 0, ..Default::default() };
            let shape = RangeShape::from_request(&req).expect("valid");
            assert_eq!(shape.sort, None);
            assert!(!shape.needs_whole_range());
        }
    }

    #[test]
    fn a_target_without_order_sorts_ascending_like_etcd() {
        let req = PbRangeRequest { key: b"a".to_vec(), sort_order: SORT_NONE, sort_target: 3, ..Default::default() };
        let shape = RangeShape::from_request(&req).expect("valid");
        assert_eq!(shape.sort, Some((SortTarget::Mod, false)));
        assert!(shape.needs_whole_range());
        assert_eq!(keys(&shape.apply(sample()).0), ["b", "c", "a"]);
    }

    #[test]
    fn descending_sorts_then_limits() {
        let req = PbRangeRequest {
            key: b"a".to_vec(),
            sort_order: SORT_DESCEND,
            sort_target: 0,
            limit: 2,
            ..Default::default()
        };
        let shape = RangeShape::from_request(&req).expect("valid");
        let (kvs, more) = shape.apply(sample());
        assert_eq!((keys(&kvs), more), (vec!["c", "b"], true));

        let req = PbRangeRequest {
            key: b"a".to_vec(),
            sort_order: SORT_DESCEND,
            sort_target: 4,
            keys_only: true,
            ..Default::default()
        };
        let (kvs, more) = RangeShape::from_request(&req).expect("valid").apply(sample());
        assert_eq!((keys(&kvs), more), (vec!["a", "c", "b"], false));
        assert!(kvs.iter().all(|kv| kv.value.is_empty()), "keys_only drops values after sorting");
    }

    #[test]
    fn revision_filters_prune_before_the_limit() {
        let req = PbRangeRequest {
            key: b"a".to_vec(),
            min_mod_revision: 6,
            max_create_revision: 4,
            limit: 1,
            ..Default::default()
        };
        let shape = RangeShape::from_request(&req).expect("valid");
        assert!(shape.needs_whole_range());
        let (kvs, more) = shape.apply(sample());
        assert_eq!((keys(&kvs), more), (vec!["a"], true));

        let req =
            PbRangeRequest { key: b"a".to_vec(), max_mod_revision: 7, min_create_revision: 3, ..Default::default() };
        let (kvs, more) = RangeShape::from_request(&req).expect("valid").apply(sample());
        assert_eq!((keys(&kvs), more), (vec!["b", "c"], false));
    }

    #[test]
    fn count_only_ignores_sorting_and_filters() {
        let req = PbRangeRequest {
            key: b"a".to_vec(),
            count_only: true,
            sort_target: 3,
            min_mod_revision: 100,
            ..Default::default()
        };
        let shape = RangeShape::from_request(&req).expect("valid");
        assert!(!shape.needs_whole_range());
        assert_eq!(shape.apply(sample()), (Vec::new(), false));
    }

    #[test]
    fn unknown_sort_values_are_rejected() {
        for (order, target) in [(3, 0), (-1, 0), (0, 5), (1, 99)] {
            let req =
                PbRangeRequest { key: b"a".to_vec(), sort_order: order, sort_target: target, ..Default::default() };
            let err = RangeShape::from_request(&req).expect_err("invalid");
            assert_eq!((err.code(), err.message()), (Code::InvalidArgument, "etcdserver: invalid sort option"));
        }
    }

    #[test]
    fn put_checks_match_etcd() {
        let ok = PbPutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ..Default::default() };
        assert!(check_put(&ok).is_ok());
        let err = check_put(&PbPutRequest { key: Vec::new(), ..ok.clone() }).expect_err("empty key");
        assert_eq!(err.message(), "etcdserver: key is not provided");
        let err = check_put(&PbPutRequest { ignore_value: true, ..ok.clone() }).expect_err("value with ignore_value");
        assert_eq!(err.message(), "etcdserver: value is provided");
        let err = check_put(&PbPutRequest { ignore_lease: true, lease: 5, ..ok.clone() })
            .expect_err("lease with ignore_lease");
        assert_eq!(err.message(), "etcdserver: lease is provided");
    }

    #[test]
    fn ignore_value_and_lease_keep_the_current_ones() {
        let mut current = kv("k", "old", 2, 4, 2);
        current.lease = Some(LeaseId(77));
        let req = PbPutRequest { key: b"k".to_vec(), ignore_value: true, lease: 5, ..Default::default() };
        assert_eq!(put_payload(&req, Some(&current)).expect("payload"), (Bytes::from_static(b"old"), Some(LeaseId(5))));
        let req = PbPutRequest { key: b"k".to_vec(), value: b"new".to_vec(), ignore_lease: true, ..Default::default() };
        assert_eq!(
            put_payload(&req, Some(&current)).expect("payload"),
            (Bytes::from_static(b"new"), Some(LeaseId(77)))
        );
        let err = put_payload(&req, None).expect_err("absent key");
        assert_eq!((err.code(), err.message()), (Code::InvalidArgument, "etcdserver: key not found"));
        let plain = PbPutRequest { key: b"k".to_vec(), value: b"new".to_vec(), ..Default::default() };
        assert_eq!(put_payload(&plain, Some(&current)).expect("payload"), (Bytes::from_static(b"new"), None));
    }
}
