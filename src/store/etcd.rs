//! The external backend: the same [`Store`](super::Store) over a real etcd cluster.
//!
//! Every key lives under [`EtcdOptions::prefix`] in etcd; the prefix is added on the way in
//! and stripped on the way out, so ranges, watches and lease key lists are relative to it.
//! Guarded writes are single etcd transactions comparing the key's `mod_revision`, so a
//! conflict costs one round trip and returns the current value.
//!
//! Where etcd and the trait differ:
//! - etcd does not report its compacted revision. [`EtcdStore::compact_revision`] is the
//!   highest revision this store compacted to, raised by what compaction errors and watch
//!   cancellations reveal; a compaction made by another client is only seen once one of
//!   those happens, and a failed read below it only proves a lower bound.
//! - Revisions and leases are global to the cluster, not to the prefix: other clients'
//!   writes advance the revision, and [`Store::leases`] lists every lease of the cluster.
//! - etcd buffers slow watchers itself, so a watch never ends with
//!   [`StoreError::WatchLagged`]; it ends with [`StoreError::Compacted`] when etcd cancels it
//!   because the history it still needed was compacted.
//! - Progress notifications are etcd's. Before etcd 3.4.24 / 3.5.8 the server may send one
//!   ahead of events at or below its revision that it has not sent yet (etcd issue 15220);
//!   from those versions on, it sends none while the watch is still catching up, so ask
//!   again.
//!
//! TLS: `https://` endpoints need [`EtcdOptions::ca_file`], the CA that signed etcd's
//! server certificate; no system roots are consulted. A client certificate and key are
//! presented when given (etcd's `--client-cert-auth` requires them). All endpoints use the
//! same scheme, and TLS files with `http://` endpoints are refused as a likely mistake.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Streaming;

use crate::etcdproto::etcdserverpb::{
    compare, LeaseKeepAliveRequest, LeaseKeepAliveResponse, WatchCreateRequest, WatchProgressRequest,
};
use crate::etcdproto::{
    KvClient, LeaseClient, MaintenanceClient, PbCompactionRequest, PbCompare, PbDeleteRequest, PbKeyValue,
    PbLeaseGrantRequest, PbLeaseLeasesRequest, PbLeaseRevokeRequest, PbLeaseTimeToLiveRequest, PbPutRequest,
    PbRangeRequest, PbResponseHeader, PbStatusRequest, PbTargetUnion, PbTxnOpRequest, PbTxnOpResponse, PbTxnRequest,
    PbTxnRequestOp, PbWatchRequest, PbWatchRequestUnion, PbWatchResponse, WatchClient,
};

use super::{
    Deleted, Event, EventKind, KeyRange, KeyValue, LeaseGrant, LeaseId, LeaseStatus, RangeEnd, RangeOptions,
    RangeResult, Result, Revision, Store, StoreError, StoreStatus, Watch, WatchItem, WriteOutcome,
};

/// How long [`EtcdStore::connect`] waits for etcd to answer when no timeout is set.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a watch with a compacted start revision waits for etcd's cancellation, which
/// carries the exact compacted revision (etcd checks unsynced watchers every 100 ms).
const COMPACTED_CANCEL_WAIT: Duration = Duration::from_secs(2);

/// Where and how to reach etcd.
#[derive(Clone, Debug, Default)]
pub struct EtcdOptions {
    /// `http://host:port` or `https://host:port` URLs, all with the same scheme.
    pub endpoints: Vec<String>,
    /// Every key the store reads or writes is put under this prefix (empty: none).
    pub prefix: Vec<u8>,
    /// How long to wait for the cluster to answer at connect time (default 10 s).
    pub connect_timeout: Option<Duration>,
    /// PEM file of the CA certificates that etcd's server certificate must chain to;
    /// required for `https://` endpoints. Read at connect.
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate to present to etcd; needs [`Self::key_file`].
    pub cert_file: Option<PathBuf>,
    /// PEM file of the private key of [`Self::cert_file`].
    pub key_file: Option<PathBuf>,
}

impl EtcdOptions {
    /// The TLS configuration the options ask for: `None` for `http://` endpoints. Checks
    /// that the options agree with each other and reads the files.
    async fn tls(&self) -> Result<Option<(ClientTlsConfig, TlsFiles)>> {
        let https: Vec<&String> = self.endpoints.iter().filter(|e| e.starts_with("https://")).collect();
        if https.is_empty() {
            let given =
                [("CA", &self.ca_file), ("client certificate", &self.cert_file), ("client key", &self.key_file)];
            if let Some((what, Some(path))) = given.into_iter().find(|(_, path)| path.is_some()) {
                return Err(StoreError::InvalidArgument(format!(
                    "etcd {what} file {} given, but endpoint {} is not https://: use https:// endpoints with TLS \
                     files, or drop the files",
                    path.display(),
                    self.endpoints.join(",")
                )));
            }
            return Ok(None);
        }
        if https.len() < self.endpoints.len() {
            return Err(StoreError::InvalidArgument(format!(
                "etcd endpoints {} mix https:// with other schemes: use https:// for all of them",
                self.endpoints.join(",")
            )));
        }
        let client_pair = match (&self.cert_file, &self.key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((cert, key)),
            (Some(cert), None) => {
                return Err(StoreError::InvalidArgument(format!(
                    "etcd client certificate file {} given without its key file",
                    cert.display()
                )))
            }
            (None, Some(key)) => {
                return Err(StoreError::InvalidArgument(format!(
                    "etcd client key file {} given without its certificate file",
                    key.display()
                )))
            }
        };
        let Some(ca) = &self.ca_file else {
            return Err(StoreError::InvalidArgument(format!(
                "etcd endpoint {} is https:// but no CA file was given: the server's certificate can only be \
                 verified against a CA file (no system roots are used)",
                https[0]
            )));
        };
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_pem(ca, "CA", "CERTIFICATE").await?));
        if let Some((cert, key)) = client_pair {
            tls = tls.identity(Identity::from_pem(
                read_pem(cert, "client certificate", "CERTIFICATE").await?,
                read_pem(key, "client key", "PRIVATE KEY").await?,
            ));
        }
        let files = TlsFiles { ca: ca.clone(), client: client_pair.map(|(c, k)| (c.clone(), k.clone())) };
        Ok(Some((tls, files)))
    }
}

/// Reads the `what` PEM file at `path`, which must hold a block whose label ends in
/// `label`; the TLS stack's own parse errors do not say which file was wrong.
async fn read_pem(path: &Path, what: &str, label: &str) -> Result<Vec<u8>> {
    let pem = tokio::fs::read(path)
        .await
        .map_err(|e| StoreError::InvalidArgument(format!("read the etcd {what} file {}: {e}", path.display())))?;
    let marker = format!("{label}-----");
    let has_block = String::from_utf8_lossy(&pem).lines().any(|l| l.starts_with("-----BEGIN ") && l.ends_with(&marker));
    if !has_block {
        return Err(StoreError::InvalidArgument(format!(
            "etcd {what} file {} holds no PEM {label} block",
            path.display()
        )));
    }
    Ok(pem)
}

/// The files a TLS connection was set up from, to name the likely culprit when it fails.
struct TlsFiles {
    ca: PathBuf,
    /// The client certificate and key.
    client: Option<(PathBuf, PathBuf)>,
}

impl TlsFiles {
    /// The error for TLS files the TLS stack refused before connecting (a key that does
    /// not match its certificate, a PEM block that does not parse).
    fn unusable(&self, err: &EtcdError) -> StoreError {
        let cause = root_cause(err);
        match &self.client {
            Some((cert, key)) if cause.contains("keys may not be consistent") => StoreError::InvalidArgument(format!(
                "etcd client key file {} does not belong to client certificate file {} ({cause})",
                key.display(),
                cert.display()
            )),
            Some((cert, key)) => StoreError::InvalidArgument(format!(
                "etcd TLS files (CA {}, client certificate {}, client key {}) cannot be used: {cause}",
                self.ca.display(),
                cert.display(),
                key.display()
            )),
            None => StoreError::InvalidArgument(format!("etcd CA file {} cannot be used: {cause}", self.ca.display())),
        }
    }

    /// Explains a failed first request over TLS when the handshake is the likely cause;
    /// other failures are returned as they are.
    fn handshake_failure(&self, endpoints: &str, err: StoreError) -> StoreError {
        let StoreError::Etcd { source, .. } = &err else { return err };
        let cause = root_cause(source);
        let client_hint = || match &self.client {
            Some((cert, _)) => format!(
                "etcd refused the client certificate {}; it accepts only certificates signed by a CA it trusts",
                cert.display()
            ),
            None => "etcd requires a client certificate; give a client certificate and key file".to_string(),
        };
        let (what, hint) = if cause.contains("invalid peer certificate") {
            (
                "TLS handshake failed",
                format!("etcd's server certificate does not verify against the CA file {}", self.ca.display()),
            )
        } else if cause.contains("received fatal alert") {
            ("TLS handshake failed", client_hint())
        } else if ["connection closed", "connection reset", "broken pipe"]
            .iter()
            .any(|c| cause.to_lowercase().contains(c))
        {
            // With TLS 1.3 the server checks the client's certificate after the client
            // considers the handshake done, so a refusal may only show as a closed
            // connection when the first request races the server's alert.
            ("etcd closed the TLS connection before answering", format!("most likely {}", client_hint()))
        } else {
            return err;
        };
        StoreError::Etcd {
            op: "connect",
            source: EtcdError::Endpoint(format!("{endpoints}: {what} ({cause}): {hint}")),
        }
    }
}

/// The text of the innermost error under `err`: the TLS stack's own words, without the
/// layers of transport errors around them.
fn root_cause(err: &EtcdError) -> String {
    let mut inner: &(dyn std::error::Error + 'static) = match err {
        EtcdError::Status(status) => status,
        EtcdError::Transport(transport) => transport,
        other => other,
    };
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner.to_string()
}

/// How a request to etcd failed, below what the trait's errors name. The texts are those
/// k3rs has always reported; the error carries no source of its own, so a report of it
/// says everything once.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// An endpoint URL that does not parse.
    #[error("invalid uri: {0}")]
    InvalidUri(String),
    /// The connection could not be set up (the TLS files did not make a configuration).
    #[error("transport error: {0}")]
    Transport(tonic::transport::Error),
    /// etcd, or the connection to it, failed the request.
    #[error("grpc request error: {0}")]
    Status(tonic::Status),
    /// etcd cancelled a watch for a reason other than compaction.
    #[error("watch error: {0}")]
    Watch(String),
    /// etcd could not be reached, or refused the connection.
    #[error("endpoint error: {0}")]
    Endpoint(String),
    /// etcd answered something the protocol does not allow.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<tonic::Status> for EtcdError {
    fn from(status: tonic::Status) -> Self {
        EtcdError::Status(status)
    }
}

/// The etcd services the store calls, all over one channel (cloning is cheap).
#[derive(Clone)]
struct Client {
    kv: KvClient<Channel>,
    watch: WatchClient<Channel>,
    lease: LeaseClient<Channel>,
    maintenance: MaintenanceClient<Channel>,
}

impl Client {
    fn new(channel: Channel) -> Client {
        Client {
            kv: KvClient::new(channel.clone()),
            watch: WatchClient::new(channel.clone()),
            lease: LeaseClient::new(channel.clone()),
            maintenance: MaintenanceClient::new(channel),
        }
    }

    async fn range(&self, req: PbRangeRequest) -> Result<crate::etcdproto::PbRangeResponse, EtcdError> {
        Ok(self.kv.clone().range(req).await?.into_inner())
    }

    async fn txn(&self, req: PbTxnRequest) -> Result<crate::etcdproto::PbTxnResponse, EtcdError> {
        Ok(self.kv.clone().txn(req).await?.into_inner())
    }

    /// Opens a watch stream and asks it for one watch; the first answer is etcd's
    /// confirmation (or refusal) of that watch.
    async fn watch(&self, create: WatchCreateRequest) -> Result<WatchStream, EtcdError> {
        // Requests beyond the first are progress requests, one at a time.
        let (sender, requests) = mpsc::channel(4);
        let first = PbWatchRequest { request_union: Some(PbWatchRequestUnion::CreateRequest(create)) };
        sender.send(first).await.map_err(|_| EtcdError::Watch("the watch request stream closed".into()))?;
        let responses = self.watch.clone().watch(ReceiverStream::new(requests)).await?.into_inner();
        Ok(WatchStream { sender, responses })
    }

    /// Renews a lease once over a keep-alive stream of its own; etcd answers TTL 0 for a
    /// lease it does not have.
    async fn keep_alive(&self, id: i64) -> Result<Option<LeaseKeepAliveResponse>, EtcdError> {
        // The request side stays open until the answer is read: a client that half-closes
        // first may see the stream end before etcd's answer.
        let request = futures::stream::iter([LeaseKeepAliveRequest { id }]).chain(futures::stream::pending());
        let mut answers = self.lease.clone().lease_keep_alive(request).await?.into_inner();
        Ok(answers.message().await?)
    }
}

/// One etcd watch stream: where requests go and where answers come from.
struct WatchStream {
    sender: mpsc::Sender<PbWatchRequest>,
    responses: Streaming<PbWatchResponse>,
}

impl WatchStream {
    async fn message(&mut self) -> Result<Option<PbWatchResponse>, EtcdError> {
        Ok(self.responses.message().await?)
    }

    /// Asks for a progress notification of every watch on the stream.
    async fn request_progress(&self) -> Result<(), EtcdError> {
        let req = PbWatchRequest { request_union: Some(PbWatchRequestUnion::ProgressRequest(WatchProgressRequest {})) };
        self.sender.send(req).await.map_err(|_| EtcdError::Watch("the watch request stream closed".into()))
    }
}

/// How to reach the etcd member at `url`: over TLS when `tls` is given, and over plain
/// http for a URL without a scheme otherwise.
fn endpoint(url: &str, tls: Option<&ClientTlsConfig>, connect_timeout: Duration) -> Result<Endpoint, EtcdError> {
    let url = if url.starts_with("http://") || url.starts_with("https://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    let uri = url.parse::<tonic::transport::Uri>().map_err(|e| EtcdError::InvalidUri(e.to_string()))?;
    let mut endpoint = Channel::builder(uri)
        .connect_timeout(connect_timeout)
        // A dead connection is noticed within 15 s even while no request is running.
        .keep_alive_while_idle(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls.clone()).map_err(EtcdError::Transport)?;
    }
    Ok(endpoint)
}

/// A read of `key` up to `range_end` (empty: the key alone) at the latest revision.
fn range_request(key: Vec<u8>, range_end: Vec<u8>) -> PbRangeRequest {
    PbRangeRequest { key, range_end, ..Default::default() }
}

/// The guard "`key` was last modified at `revision`" (0: `key` does not exist).
fn mod_revision_is(key: Vec<u8>, revision: i64) -> PbCompare {
    PbCompare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Mod as i32,
        key,
        range_end: Vec::new(),
        target_union: Some(PbTargetUnion::ModRevision(revision)),
    }
}

fn txn_op(request: PbTxnOpRequest) -> PbTxnRequestOp {
    PbTxnRequestOp { request: Some(request) }
}

/// A write of `key` that answers its previous value.
fn put_request(key: Vec<u8>, value: Vec<u8>, lease: Option<LeaseId>) -> PbPutRequest {
    PbPutRequest { key, value, lease: lease_id(lease), prev_kv: true, ..Default::default() }
}

/// A delete of `key` alone that answers its previous value.
fn delete_request(key: Vec<u8>) -> PbDeleteRequest {
    PbDeleteRequest { key, prev_kv: true, ..Default::default() }
}

/// See the module documentation.
pub struct EtcdStore {
    client: RwLock<Option<Client>>,
    shared: Arc<Shared>,
}

/// What running watches need from the store.
struct Shared {
    prefix: Bytes,
    /// Highest compacted revision known to this store (see the module documentation).
    compacted: AtomicI64,
}

impl Shared {
    fn full_key(&self, key: &[u8]) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.prefix.len() + key.len());
        full.extend_from_slice(&self.prefix);
        full.extend_from_slice(key);
        full
    }

    /// The etcd key and range end of `range` under the prefix.
    fn etcd_range(&self, range: &KeyRange) -> (Vec<u8>, Vec<u8>) {
        let mut key = self.full_key(&range.start);
        let end = match &range.end {
            RangeEnd::Single => return (key, Vec::new()),
            RangeEnd::Before(end) => self.full_key(end),
            RangeEnd::Unbounded => crate::etcdproto::prefix_range_end(&self.prefix),
        };
        // etcd refuses an empty key; no key sorts between "" and "\0", so the range is the same.
        if key.is_empty() {
            key.push(0);
        }
        (key, end)
    }

    fn strip(&self, key: Vec<u8>) -> Option<Bytes> {
        key.starts_with(&self.prefix).then(|| Bytes::from(key).slice(self.prefix.len()..))
    }

    /// Converts an etcd key-value; `None` for a key outside the prefix, which no request of
    /// this store can return.
    fn kv(&self, kv: PbKeyValue) -> Option<KeyValue> {
        Some(KeyValue {
            key: self.strip(kv.key)?,
            value: Bytes::from(kv.value),
            create_revision: Revision(kv.create_revision),
            mod_revision: Revision(kv.mod_revision),
            version: kv.version,
            lease: (kv.lease != 0).then_some(LeaseId(kv.lease)),
        })
    }

    /// Raises the known compacted revision to at least `rev`; returns the new value.
    fn learn_compacted(&self, rev: i64) -> Revision {
        Revision(self.compacted.fetch_max(rev, Ordering::AcqRel).max(rev))
    }
}

/// The etcd failures the trait names.
enum Known {
    Compacted,
    FutureRevision,
    LeaseNotFound,
    LeaseExists,
    InvalidArgument(String),
    Other,
}

fn classify(err: &EtcdError) -> Known {
    match err {
        EtcdError::Status(status) => {
            let msg = status.message();
            if msg.contains("required revision has been compacted") {
                Known::Compacted
            } else if msg.contains("is a future revision") {
                Known::FutureRevision
            } else if msg.contains("requested lease not found") {
                Known::LeaseNotFound
            } else if msg.contains("lease already exists") {
                Known::LeaseExists
            } else if status.code() == tonic::Code::InvalidArgument {
                Known::InvalidArgument(msg.to_string())
            } else {
                Known::Other
            }
        }
        _ => Known::Other,
    }
}

/// What a failed request was about, to fill in the error the trait expects.
#[derive(Default)]
struct ErrCtx {
    /// The revision the request asked for.
    requested: Option<Revision>,
    /// The compacted revision is at least this when etcd says the request was compacted.
    compacted_floor: i64,
    lease: Option<LeaseId>,
}

fn protocol_error(op: &'static str, what: &str) -> StoreError {
    StoreError::Etcd { op, source: EtcdError::Internal(what.to_string()) }
}

fn header_revision(op: &'static str, header: &Option<PbResponseHeader>) -> Result<Revision> {
    header.as_ref().map(|h| Revision(h.revision)).ok_or_else(|| protocol_error(op, "response without a header"))
}

fn lease_id(lease: Option<LeaseId>) -> i64 {
    lease.map_or(0, |l| l.0)
}

impl EtcdStore {
    /// Connects to the cluster and checks that it answers.
    pub async fn connect(opts: EtcdOptions) -> Result<EtcdStore> {
        if opts.endpoints.is_empty() {
            return Err(StoreError::InvalidArgument("no etcd endpoint given".into()));
        }
        let (tls, tls_files) = opts.tls().await?.unzip();
        let timeout = opts.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let mut endpoints = Vec::with_capacity(opts.endpoints.len());
        for url in &opts.endpoints {
            endpoints.push(endpoint(url, tls.as_ref(), timeout).map_err(|source| {
                // Building the TLS configuration is the only transport work done before the
                // first request.
                if let (Some(files), EtcdError::Transport(_)) = (&tls_files, &source) {
                    return files.unusable(&source);
                }
                StoreError::Etcd { op: "connect", source }
            })?);
        }
        // Requests go to any endpoint that is up, as the cluster serves them from every member.
        let channel = Channel::balance_list(endpoints.into_iter());
        let store = EtcdStore {
            client: RwLock::new(Some(Client::new(channel))),
            shared: Arc::new(Shared { prefix: Bytes::from(opts.prefix), compacted: AtomicI64::new(0) }),
        };
        // The client connects lazily: ask for the revision so a wrong endpoint fails here.
        match tokio::time::timeout(timeout, store.current_revision()).await {
            Ok(Ok(rev)) => tracing::debug!(endpoints = ?opts.endpoints, %rev, "connected to etcd"),
            Ok(Err(err)) => {
                return Err(match &tls_files {
                    Some(files) => files.handshake_failure(&opts.endpoints.join(","), err),
                    None => err,
                })
            }
            Err(_) => {
                return Err(StoreError::Etcd {
                    op: "connect",
                    source: EtcdError::Endpoint(format!(
                        "no answer from {} within {timeout:?}",
                        opts.endpoints.join(",")
                    )),
                })
            }
        }
        Ok(store)
    }

    fn client(&self) -> Result<Client> {
        // A poisoned lock only means another thread panicked while swapping the client out.
        let guard = self.client.read().unwrap_or_else(|e| e.into_inner());
        guard.clone().ok_or(StoreError::Closed)
    }

    /// Turns an etcd failure of `op` into the trait's error.
    async fn fail(&self, op: &'static str, err: EtcdError, ctx: ErrCtx) -> StoreError {
        match (classify(&err), ctx.requested, ctx.lease) {
            (Known::Compacted, Some(requested), _) => {
                StoreError::Compacted { requested, compacted: self.shared.learn_compacted(ctx.compacted_floor) }
            }
            (Known::FutureRevision, Some(requested), _) => {
                let current = self.latest_revision().await.unwrap_or(Revision(requested.0 - 1));
                StoreError::FutureRevision { requested, current }
            }
            (Known::LeaseNotFound, _, Some(lease)) => StoreError::LeaseNotFound(lease),
            (Known::LeaseExists, _, Some(lease)) => StoreError::LeaseExists(lease),
            (Known::InvalidArgument(msg), _, _) => StoreError::InvalidArgument(msg),
            _ => StoreError::Etcd { op, source: err },
        }
    }

    /// The cluster's revision, from the header of the cheapest read there is.
    async fn latest_revision(&self) -> Result<Revision> {
        let key = if self.shared.prefix.is_empty() { vec![0] } else { self.shared.prefix.to_vec() };
        let resp = self
            .client()?
            .range(PbRangeRequest { count_only: true, ..range_request(key, Vec::new()) })
            .await
            .map_err(|source| StoreError::Etcd { op: "read the revision", source })?;
        header_revision("read the revision", &resp.header)
    }

    /// Checks that a read at `rev` is allowed, for requests etcd cannot answer by itself.
    async fn check_readable(&self, op: &'static str, rev: Option<Revision>) -> Result<Revision> {
        let key = if self.shared.prefix.is_empty() { vec![0] } else { self.shared.prefix.to_vec() };
        let get =
            PbRangeRequest { count_only: true, revision: rev.map_or(0, |r| r.0), ..range_request(key, Vec::new()) };
        match self.client()?.range(get).await {
            Ok(resp) => Ok(rev.unwrap_or(header_revision(op, &resp.header)?)),
            Err(err) => {
                let floor = rev.map_or(0, |r| r.0 + 1);
                Err(self.fail(op, err, ErrCtx { requested: rev, compacted_floor: floor, ..Default::default() }).await)
            }
        }
    }

    /// Reads `key` inside the guard of a failed transaction.
    fn current_of(&self, op: &'static str, resp: Option<PbTxnOpResponse>) -> Result<Option<KeyValue>> {
        match resp {
            Some(PbTxnOpResponse::ResponseRange(range)) => {
                Ok(range.kvs.into_iter().next().and_then(|kv| self.shared.kv(kv)))
            }
            _ => Err(protocol_error(op, "transaction answered without the read of the key")),
        }
    }

    /// Runs a transaction guarded by `compare` that does `then` on success and reads `key`
    /// on failure.
    async fn guarded(
        &self,
        op: &'static str,
        key: Vec<u8>,
        compare: PbCompare,
        then: PbTxnOpRequest,
        lease: Option<LeaseId>,
    ) -> Result<WriteOutcome> {
        let txn = PbTxnRequest {
            compare: vec![compare],
            success: vec![txn_op(then)],
            failure: vec![txn_op(PbTxnOpRequest::RequestRange(range_request(key, Vec::new())))],
        };
        let resp = match self.client()?.txn(txn).await {
            Ok(resp) => resp,
            Err(err) => return Err(self.fail(op, err, ErrCtx { lease, ..Default::default() }).await),
        };
        let revision = header_revision(op, &resp.header)?;
        let first = resp.responses.into_iter().next().and_then(|r| r.response);
        if !resp.succeeded {
            return Ok(WriteOutcome::Failed { current: self.current_of(op, first)? });
        }
        let prev = match first {
            Some(PbTxnOpResponse::ResponsePut(put)) => put.prev_kv,
            Some(PbTxnOpResponse::ResponseDeleteRange(del)) => {
                if del.deleted == 0 {
                    // The guard held, so the key existed at that revision and etcd deleted it.
                    return Err(protocol_error(op, "guarded delete deleted nothing"));
                }
                del.prev_kvs.into_iter().next()
            }
            _ => return Err(protocol_error(op, "transaction answered without the write")),
        };
        Ok(WriteOutcome::Applied { revision, prev: prev.and_then(|kv| self.shared.kv(kv)) })
    }

    /// The outcome of a write whose guard cannot hold (an expected revision no write has):
    /// the key's current value, read without writing.
    async fn failed_guard(&self, op: &'static str, key: &[u8]) -> Result<WriteOutcome> {
        let resp = match self.client()?.range(range_request(self.shared.full_key(key), Vec::new())).await {
            Ok(resp) => resp,
            Err(err) => return Err(self.fail(op, err, ErrCtx::default()).await),
        };
        Ok(WriteOutcome::Failed { current: resp.kvs.into_iter().next().and_then(|kv| self.shared.kv(kv)) })
    }

    /// Waits for etcd to cancel a watch whose start was compacted, for the exact compacted
    /// revision it reports.
    async fn compacted_watch_error(&self, responses: &mut WatchStream, requested: Revision) -> StoreError {
        let wait = async {
            while let Ok(Some(resp)) = responses.message().await {
                if resp.canceled && resp.compact_revision > 0 {
                    return Some(resp.compact_revision);
                }
            }
            None
        };
        let exact = tokio::time::timeout(COMPACTED_CANCEL_WAIT, wait).await.ok().flatten();
        let compacted = self.shared.learn_compacted(exact.unwrap_or(requested.0 + 1));
        StoreError::Compacted { requested, compacted }
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn current_revision(&self) -> Result<Revision> {
        self.latest_revision().await
    }

    async fn range(&self, range: &KeyRange, opts: RangeOptions) -> Result<RangeResult> {
        if let Some(rev) = opts.revision.filter(|r| r.0 <= 0) {
            return Err(StoreError::InvalidArgument(format!("read at revision {rev}: revisions start at 1")));
        }
        if range.is_empty() {
            // etcd has no encoding for an empty range, but the revision must still be checked.
            let revision = self.check_readable("read a range", opts.revision).await?;
            return Ok(RangeResult { revision, kvs: Vec::new(), more: false, count: 0 });
        }
        let (key, end) = self.shared.etcd_range(range);
        let get = PbRangeRequest {
            revision: opts.revision.map_or(0, |r| r.0),
            // etcd reads a limit of 0 as "no limit"; the trait means no key at all.
            limit: opts.limit.filter(|l| *l > 0).map_or(0, |l| i64::try_from(l).unwrap_or(i64::MAX)),
            keys_only: opts.keys_only,
            count_only: opts.count_only || opts.limit == Some(0),
            ..range_request(key, end)
        };
        let resp = match self.client()?.range(get).await {
            Ok(resp) => resp,
            Err(err) => {
                let floor = opts.revision.map_or(0, |r| r.0 + 1);
                let ctx = ErrCtx { requested: opts.revision, compacted_floor: floor, ..Default::default() };
                return Err(self.fail("read a range", err, ctx).await);
            }
        };
        // etcd's header always carries the latest revision, even for a read in the past.
        let revision = match opts.revision {
            Some(rev) => rev,
            None => header_revision("read a range", &resp.header)?,
        };
        let kvs: Vec<KeyValue> = resp.kvs.into_iter().filter_map(|kv| self.shared.kv(kv)).collect();
        let more = if opts.limit == Some(0) && !opts.count_only { resp.count > 0 } else { resp.more };
        Ok(RangeResult { revision, kvs, more, count: resp.count })
    }

    async fn create(&self, key: Bytes, value: Bytes, lease: Option<LeaseId>) -> Result<WriteOutcome> {
        let full = self.shared.full_key(&key);
        let compare = mod_revision_is(full.clone(), 0);
        // The key is absent when the guard holds: there is no previous value to ask for.
        let put = PbPutRequest { prev_kv: false, ..put_request(full.clone(), value.to_vec(), lease) };
        self.guarded("create a key", full, compare, PbTxnOpRequest::RequestPut(put), lease).await
    }

    async fn update(
        &self,
        key: Bytes,
        value: Bytes,
        expected: Revision,
        lease: Option<LeaseId>,
    ) -> Result<WriteOutcome> {
        if expected.0 <= 0 {
            // mod_revision == 0 holds for an absent key, which an update must not create.
            return self.failed_guard("update a key", &key).await;
        }
        let full = self.shared.full_key(&key);
        let compare = mod_revision_is(full.clone(), expected.0);
        let put = PbTxnOpRequest::RequestPut(put_request(full.clone(), value.to_vec(), lease));
        self.guarded("update a key", full, compare, put, lease).await
    }

    async fn put(&self, key: Bytes, value: Bytes, lease: Option<LeaseId>) -> Result<WriteOutcome> {
        let put = put_request(self.shared.full_key(&key), value.to_vec(), lease);
        let resp = match self.client()?.kv.put(put).await {
            Ok(resp) => resp.into_inner(),
            Err(err) => return Err(self.fail("put a key", err.into(), ErrCtx { lease, ..Default::default() }).await),
        };
        let revision = header_revision("put a key", &resp.header)?;
        Ok(WriteOutcome::Applied { revision, prev: resp.prev_kv.and_then(|kv| self.shared.kv(kv)) })
    }

    async fn delete(&self, key: Bytes, expected: Option<Revision>) -> Result<WriteOutcome> {
        let full = self.shared.full_key(&key);
        match expected {
            None => {
                let resp = match self.client()?.kv.delete_range(delete_request(full)).await {
                    Ok(resp) => resp.into_inner(),
                    Err(err) => return Err(self.fail("delete a key", err.into(), ErrCtx::default()).await),
                };
                if resp.deleted == 0 {
                    return Ok(WriteOutcome::Failed { current: None });
                }
                let revision = header_revision("delete a key", &resp.header)?;
                let prev = resp.prev_kvs.into_iter().next().and_then(|kv| self.shared.kv(kv));
                Ok(WriteOutcome::Applied { revision, prev })
            }
            Some(expected) if expected.0 <= 0 => self.failed_guard("delete a key", &key).await,
            Some(expected) => {
                let compare = mod_revision_is(full.clone(), expected.0);
                let delete = PbTxnOpRequest::RequestDeleteRange(delete_request(full.clone()));
                self.guarded("delete a key", full, compare, delete, None).await
            }
        }
    }

    async fn delete_range(&self, range: &KeyRange) -> Result<Deleted> {
        let (key, end) = self.shared.etcd_range(range);
        let request = PbDeleteRequest { key, range_end: end, prev_kv: true };
        let resp = match self.client()?.kv.delete_range(request).await {
            Ok(resp) => resp.into_inner(),
            Err(err) => return Err(self.fail("delete a range", err.into(), ErrCtx::default()).await),
        };
        let revision = header_revision("delete a range", &resp.header)?;
        let prev = resp.prev_kvs.into_iter().filter_map(|kv| self.shared.kv(kv)).collect();
        Ok(Deleted { revision, prev })
    }

    async fn watch(&self, range: KeyRange, start: Option<Revision>) -> Result<Watch> {
        if let Some(rev) = start.filter(|r| r.0 <= 0) {
            return Err(StoreError::InvalidArgument(format!("watch from revision {rev}: revisions start at 1")));
        }
        if range.is_empty() {
            return Err(StoreError::InvalidArgument("watch of an empty range".into()));
        }
        let (key, range_end) = self.shared.etcd_range(&range);
        let create = WatchCreateRequest {
            key,
            range_end,
            start_revision: start.map_or(0, |r| r.0),
            prev_kv: true,
            ..Default::default()
        };
        let mut responses = match self.client()?.watch(create).await {
            Ok(stream) => stream,
            Err(err) => return Err(self.fail("start a watch", err, ErrCtx::default()).await),
        };
        // Wait for etcd to register the watch, so that a write made after this returns is
        // seen by a watch without a start revision.
        let created = match responses.message().await {
            Ok(Some(resp)) => resp,
            Ok(None) => return Err(protocol_error("start a watch", "etcd closed the watch stream")),
            Err(err) => return Err(self.fail("start a watch", err, ErrCtx::default()).await),
        };
        if created.canceled {
            if created.compact_revision > 0 {
                let requested = start.unwrap_or_default();
                let compacted = self.shared.learn_compacted(created.compact_revision);
                return Err(StoreError::Compacted { requested, compacted });
            }
            return Err(StoreError::Etcd { op: "start a watch", source: EtcdError::Watch(created.cancel_reason) });
        }
        if !created.created {
            return Err(protocol_error("start a watch", "etcd answered the watch request without creating it"));
        }
        // etcd accepts a compacted start and cancels the watch later; fail now instead.
        if let Some(rev) = start {
            match self.check_readable("start a watch", Some(rev)).await {
                Ok(_) | Err(StoreError::FutureRevision { .. }) => {}
                Err(StoreError::Compacted { requested, .. }) => {
                    return Err(self.compacted_watch_error(&mut responses, requested).await);
                }
                Err(err) => return Err(err),
            }
        }
        let next = match start {
            Some(rev) => rev,
            None => Revision(created.header.as_ref().map_or(0, |h| h.revision) + 1),
        };
        let progress = Arc::new(Notify::new());
        let state = WatchState {
            stream: responses,
            progress: progress.clone(),
            shared: self.shared.clone(),
            watch_id: created.watch_id,
            next,
            done: false,
        };
        let stream = futures::stream::unfold(state, |mut state| async move {
            let item = state.next_item().await?;
            Some((item, state))
        });
        Ok(Watch::new(stream.boxed(), Arc::new(move || progress.notify_one())))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.client()?.kv.compact(PbCompactionRequest { revision: revision.0, physical: false }).await {
            Ok(_) => {
                self.shared.learn_compacted(revision.0);
                Ok(())
            }
            Err(err) => {
                let ctx = ErrCtx { requested: Some(revision), compacted_floor: revision.0, ..Default::default() };
                Err(self.fail("compact", err.into(), ctx).await)
            }
        }
    }

    async fn compact_revision(&self) -> Result<Revision> {
        self.client()?;
        Ok(Revision(self.shared.compacted.load(Ordering::Acquire)))
    }

    async fn lease_grant(&self, id: Option<LeaseId>, ttl: i64) -> Result<LeaseGrant> {
        let grant = PbLeaseGrantRequest { ttl, id: lease_id(id) };
        let resp = match self.client()?.lease.lease_grant(grant).await {
            Ok(resp) => resp.into_inner(),
            Err(err) => {
                return Err(self.fail("grant a lease", err.into(), ErrCtx { lease: id, ..Default::default() }).await)
            }
        };
        if !resp.error.is_empty() {
            return Err(StoreError::Etcd { op: "grant a lease", source: EtcdError::Internal(resp.error) });
        }
        Ok(LeaseGrant { id: LeaseId(resp.id), ttl: resp.ttl })
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<()> {
        match self.client()?.lease.lease_revoke(PbLeaseRevokeRequest { id: id.0 }).await {
            Ok(_) => Ok(()),
            Err(err) => {
                Err(self.fail("revoke a lease", err.into(), ErrCtx { lease: Some(id), ..Default::default() }).await)
            }
        }
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<i64> {
        match self.client()?.keep_alive(id.0).await {
            Ok(Some(resp)) if resp.ttl > 0 => Ok(resp.ttl),
            Ok(Some(_)) => Err(StoreError::LeaseNotFound(id)),
            Ok(None) => Err(protocol_error("renew a lease", "etcd closed the keep-alive stream")),
            Err(err) => Err(self.fail("renew a lease", err, ErrCtx { lease: Some(id), ..Default::default() }).await),
        }
    }

    async fn lease_status(&self, id: LeaseId) -> Result<Option<LeaseStatus>> {
        let resp =
            match self.client()?.lease.lease_time_to_live(PbLeaseTimeToLiveRequest { id: id.0, keys: true }).await {
                Ok(resp) => resp.into_inner(),
                Err(err) => {
                    return match self
                        .fail("read a lease", err.into(), ErrCtx { lease: Some(id), ..Default::default() })
                        .await
                    {
                        StoreError::LeaseNotFound(_) => Ok(None),
                        err => Err(err),
                    }
                }
            };
        // etcd answers TTL -1 for a lease it does not have.
        if resp.ttl < 0 {
            return Ok(None);
        }
        // Other clients may attach keys outside the prefix to the lease: those are not ours.
        let mut keys: Vec<Bytes> = resp.keys.into_iter().filter_map(|k| self.shared.strip(k)).collect();
        keys.sort();
        Ok(Some(LeaseStatus { id, granted_ttl: resp.granted_ttl, ttl: resp.ttl, keys }))
    }

    async fn leases(&self) -> Result<Vec<LeaseId>> {
        match self.client()?.lease.lease_leases(PbLeaseLeasesRequest {}).await {
            Ok(resp) => Ok(resp.into_inner().leases.into_iter().map(|l| LeaseId(l.id)).collect()),
            Err(err) => Err(self.fail("list leases", err.into(), ErrCtx::default()).await),
        }
    }

    async fn status(&self) -> Result<StoreStatus> {
        let resp = match self.client()?.maintenance.status(PbStatusRequest {}).await {
            Ok(resp) => resp.into_inner(),
            Err(err) => return Err(self.fail("read the status", err.into(), ErrCtx::default()).await),
        };
        let revision = header_revision("read the status", &resp.header)?;
        // etcd before 3.4 does not report the size in use.
        let db_size_in_use = if resp.db_size_in_use > 0 { resp.db_size_in_use } else { resp.db_size };
        Ok(StoreStatus {
            revision,
            compact_revision: Revision(self.shared.compacted.load(Ordering::Acquire)),
            db_size: resp.db_size,
            db_size_in_use,
            backend: format!("etcd {}", resp.version),
        })
    }

    async fn close(&self) -> Result<()> {
        let mut guard = self.client.write().unwrap_or_else(|e| e.into_inner());
        // Dropping the client closes its channel once running requests and watches end.
        guard.take();
        Ok(())
    }
}

/// One etcd watch stream carrying one watch.
struct WatchState {
    stream: WatchStream,
    progress: Arc<Notify>,
    shared: Arc<Shared>,
    watch_id: i64,
    /// The lowest revision not delivered yet: where a cancelled watch would resume.
    next: Revision,
    done: bool,
}

impl WatchState {
    async fn next_item(&mut self) -> Option<Result<WatchItem>> {
        while !self.done {
            let resp = tokio::select! {
                resp = self.stream.message() => resp,
                _ = self.progress.notified() => {
                    if let Err(err) = self.stream.request_progress().await {
                        // The request side only fails once the stream is gone, which the
                        // response side reports.
                        tracing::debug!(error = %err, "etcd watch: progress request not sent");
                    }
                    continue;
                }
            };
            let resp = match resp {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    self.done = true;
                    return Some(Err(protocol_error("watch", "etcd closed the watch stream")));
                }
                Err(source) => {
                    self.done = true;
                    return Some(Err(StoreError::Etcd { op: "watch", source }));
                }
            };
            if resp.canceled {
                self.done = true;
                if resp.compact_revision > 0 {
                    let compacted = self.shared.learn_compacted(resp.compact_revision);
                    return Some(Err(StoreError::Compacted { requested: self.next, compacted }));
                }
                let source = EtcdError::Watch(resp.cancel_reason);
                return Some(Err(StoreError::Etcd { op: "watch", source }));
            }
            if !resp.events.is_empty() {
                let mut events = Vec::with_capacity(resp.events.len());
                for ev in resp.events {
                    let kind = match ev.r#type {
                        0 => EventKind::Put,
                        1 => EventKind::Delete,
                        other => {
                            self.done = true;
                            return Some(Err(protocol_error("watch", &format!("unknown event type {other}"))));
                        }
                    };
                    let Some(kv) = ev.kv.and_then(|kv| self.shared.kv(kv)) else {
                        self.done = true;
                        return Some(Err(protocol_error("watch", "event without a key in the watched range")));
                    };
                    let prev_kv = ev.prev_kv.and_then(|kv| self.shared.kv(kv));
                    events.push(Event { kind, kv, prev_kv });
                }
                if let Some(last) = events.last() {
                    self.next = last.revision().next();
                }
                return Some(Ok(WatchItem::Events(events)));
            }
            // A response without events that is not about creation is progress: either the
            // answer to a progress request (watch id -1) or etcd's periodic notification.
            if !resp.created && (resp.watch_id == -1 || resp.watch_id == self.watch_id) {
                if let Some(header) = resp.header {
                    return Some(Ok(WatchItem::Progress(Revision(header.revision))));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_without_a_scheme_are_plain_http() {
        let e = endpoint("127.0.0.1:2379", None, Duration::from_secs(1)).expect("endpoint");
        assert_eq!(e.uri().to_string(), "http://127.0.0.1:2379/");
        let e = endpoint("https://etcd.example:2379", None, Duration::from_secs(1)).expect("endpoint");
        assert_eq!(e.uri().scheme_str(), Some("https"));
    }

    #[test]
    fn an_endpoint_that_does_not_parse_is_an_invalid_uri() {
        let err = endpoint("http://exa mple:2379", None, Duration::from_secs(1)).expect_err("invalid");
        assert!(matches!(err, EtcdError::InvalidUri(_)), "{err:?}");
        assert!(err.to_string().starts_with("invalid uri: "), "{err}");
    }

    #[test]
    fn errors_read_as_they_always_have() {
        let status = EtcdError::Status(tonic::Status::unavailable("down"));
        assert!(status.to_string().starts_with("grpc request error: "), "{status}");
        assert!(status.to_string().contains("down"), "{status}");
        assert_eq!(EtcdError::Watch("gone".into()).to_string(), "watch error: gone");
        assert_eq!(EtcdError::Endpoint("e:1: no answer".into()).to_string(), "endpoint error: e:1: no answer");
        assert_eq!(EtcdError::Internal("odd".into()).to_string(), "internal error: odd");
        // The error is the last word: reports of a StoreError::Etcd do not repeat its cause.
        assert!(std::error::Error::source(&status).is_none());
    }

    #[test]
    fn etcd_statuses_map_to_the_trait_errors() {
        let kind = |code: tonic::Code, msg: &str| classify(&EtcdError::Status(tonic::Status::new(code, msg)));
        let compacted = "etcdserver: mvcc: required revision has been compacted";
        assert!(matches!(kind(tonic::Code::OutOfRange, compacted), Known::Compacted));
        let future = "etcdserver: mvcc: required revision is a future revision";
        assert!(matches!(kind(tonic::Code::OutOfRange, future), Known::FutureRevision));
        let lease = "etcdserver: requested lease not found";
        assert!(matches!(kind(tonic::Code::NotFound, lease), Known::LeaseNotFound));
        let exists = "etcdserver: lease already exists";
        assert!(matches!(kind(tonic::Code::FailedPrecondition, exists), Known::LeaseExists));
        let bad = "etcdserver: key is not provided";
        assert!(matches!(kind(tonic::Code::InvalidArgument, bad), Known::InvalidArgument(m) if m == bad));
        assert!(matches!(kind(tonic::Code::Unavailable, "down"), Known::Other));
        assert!(matches!(classify(&EtcdError::Watch("gone".into())), Known::Other));
    }

    #[test]
    fn guarded_writes_compare_the_mod_revision_and_ask_for_the_previous_value() {
        let guard = mod_revision_is(b"/k".to_vec(), 7);
        assert_eq!(guard.result(), compare::CompareResult::Equal);
        assert_eq!(guard.target(), compare::CompareTarget::Mod);
        assert_eq!((guard.key.as_slice(), guard.range_end.is_empty()), (&b"/k"[..], true));
        assert_eq!(guard.target_union, Some(PbTargetUnion::ModRevision(7)));
        let put = put_request(b"/k".to_vec(), b"v".to_vec(), Some(LeaseId(5)));
        assert_eq!((put.lease, put.prev_kv, put.ignore_value), (5, true, false));
        assert_eq!(put_request(b"/k".to_vec(), Vec::new(), None).lease, 0);
        let delete = delete_request(b"/k".to_vec());
        assert!(delete.prev_kv && delete.range_end.is_empty());
    }
}
