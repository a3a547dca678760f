//! The Lease service: Grant, Revoke, KeepAlive, TimeToLive and Leases over the store's
//! leases, with etcd's TTL bounds and its answers for leases that are gone.
use std::pin::Pin;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{header, msg, store_status, Api};
use crate::etcdproto::{
    PbLeaseGrantRequest, PbLeaseGrantResponse, PbLeaseKeepAliveRequest, PbLeaseKeepAliveResponse, PbLeaseLeasesRequest,
    PbLeaseLeasesResponse, PbLeaseRevokeRequest, PbLeaseRevokeResponse, PbLeaseService, PbLeaseStatus,
    PbLeaseTimeToLiveRequest, PbLeaseTimeToLiveResponse,
};
use crate::store::{LeaseId, Store, StoreError};

/// etcd's largest TTL.
const MAX_TTL: i64 = 9_000_000_000;
/// etcd's smallest TTL with its default election timeout: shorter leases are granted this.
const MIN_TTL: i64 = 2;

pub(crate) struct LeaseService {
    api: Api,
}

impl LeaseService {
    pub(crate) fn new(api: Api) -> Self {
        LeaseService { api }
    }
}

/// The TTL etcd grants for a requested one.
pub(crate) fn granted_ttl(requested: i64) -> Result<i64, Status> {
    if requested > MAX_TTL {
        return Err(Status::out_of_range(msg::LEASE_TTL_TOO_LARGE));
    }
    Ok(requested.max(MIN_TTL))
}

async fn current_header(store: &dyn Store) -> Result<Option<crate::etcdproto::PbResponseHeader>, Status> {
    Ok(header(store.current_revision().await.map_err(store_status)?))
}

#[tonic::async_trait]
impl PbLeaseService for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<PbLeaseGrantRequest>,
    ) -> Result<Response<PbLeaseGrantResponse>, Status> {
        let req = request.into_inner();
        let ttl = granted_ttl(req.ttl)?;
        let id = (req.id != 0).then_some(LeaseId(req.id));
        let store = &*self.api.store;
        let grant = store.lease_grant(id, ttl).await.map_err(store_status)?;
        Ok(Response::new(PbLeaseGrantResponse {
            header: current_header(store).await?,
            id: grant.id.0,
            ttl: grant.ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        request: Request<PbLeaseRevokeRequest>,
    ) -> Result<Response<PbLeaseRevokeResponse>, Status> {
        let store = &*self.api.store;
        store.lease_revoke(LeaseId(request.into_inner().id)).await.map_err(store_status)?;
        Ok(Response::new(PbLeaseRevokeResponse { header: current_header(store).await? }))
    }

    type LeaseKeepAliveStream = Pin<Box<dyn Stream<Item = Result<PbLeaseKeepAliveResponse, Status>> + Send>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<PbLeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut input = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let store = self.api.store.clone();
        let mut stop = self.api.stop.clone();
        tokio::spawn(async move {
            loop {
                let req = tokio::select! {
                    req = input.message() => req,
                    _ = tx.closed() => return,
                    _ = stop.wait() => {
                        let _ = tx.send(Err(Status::unavailable(msg::STOPPED))).await;
                        return;
                    }
                };
                let req = match req {
                    Ok(Some(req)) => req,
                    Ok(None) | Err(_) => return,
                };
                let resp = keep_alive(&*store, req.id).await;
                let failed = resp.is_err();
                if tx.send(resp).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<PbLeaseTimeToLiveRequest>,
    ) -> Result<Response<PbLeaseTimeToLiveResponse>, Status> {
        let req = request.into_inner();
        let store = &*self.api.store;
        let status = store.lease_status(LeaseId(req.id)).await.map_err(store_status)?;
        let header = current_header(store).await?;
        // A lease that is gone is not an error here: etcd answers TTL -1.
        let resp = match status {
            Some(st) => PbLeaseTimeToLiveResponse {
                header,
                id: st.id.0,
                ttl: st.ttl,
                granted_ttl: st.granted_ttl,
                keys: if req.keys { st.keys.into_iter().map(|k| k.to_vec()).collect() } else { Vec::new() },
            },
            None => PbLeaseTimeToLiveResponse { header, id: req.id, ttl: -1, granted_ttl: 0, keys: Vec::new() },
        };
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        _request: Request<PbLeaseLeasesRequest>,
    ) -> Result<Response<PbLeaseLeasesResponse>, Status> {
        let store = &*self.api.store;
        let leases = store.leases().await.map_err(store_status)?;
        Ok(Response::new(PbLeaseLeasesResponse {
            header: current_header(store).await?,
            leases: leases.into_iter().map(|id| PbLeaseStatus { id: id.0 }).collect(),
        }))
    }
}

/// Renews one lease; a lease that is gone gets TTL 0, as etcd answers.
async fn keep_alive(store: &dyn Store, id: i64) -> Result<PbLeaseKeepAliveResponse, Status> {
    let ttl = match store.lease_keep_alive(LeaseId(id)).await {
        Ok(ttl) => ttl,
        Err(StoreError::LeaseNotFound(_)) => 0,
        Err(err) => return Err(store_status(err)),
    };
    Ok(PbLeaseKeepAliveResponse { header: current_header(store).await?, id, ttl })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn ttls_are_bounded_like_etcd() {
        assert_eq!(granted_ttl(60).expect("ttl"), 60);
        assert_eq!(granted_ttl(1).expect("ttl"), 2);
        assert_eq!(granted_ttl(0).expect("ttl"), 2);
        assert_eq!(granted_ttl(-5).expect("ttl"), 2);
        assert_eq!(granted_ttl(9_000_000_000).expect("ttl"), 9_000_000_000);
        let err = granted_ttl(9_000_000_001).expect_err("too large");
        assert_eq!((err.code(), err.message()), (Code::OutOfRange, "etcdserver: too large lease TTL"));
    }
}
