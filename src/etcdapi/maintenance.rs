//! The Maintenance service: Status (what `etcdctl endpoint status` and kube-apiserver's
//! version check read) and listing alarms (there are none); the operations that only make
//! sense for an etcd cluster or its bolt database are refused with a clear error.
use std::pin::Pin;

use futures::Stream;
use tonic::{Request, Response, Status};

use super::{header, store_status, unsupported, Api, ETCD_VERSION, MEMBER_ID, RAFT_TERM};
use crate::etcdproto::{
    PbAlarmRequest, PbAlarmResponse, PbDefragmentRequest, PbDefragmentResponse, PbDowngradeRequest,
    PbDowngradeResponse, PbHashKvRequest, PbHashKvResponse, PbHashRequest, PbHashResponse, PbMaintenanceService,
    PbMoveLeaderRequest, PbMoveLeaderResponse, PbSnapshotRequest, PbSnapshotResponse, PbStatusRequest,
    PbStatusResponse,
};

/// etcd's `AlarmRequest.AlarmAction.GET`.
const ALARM_GET: i32 = 0;

pub(crate) struct MaintenanceService {
    api: Api,
}

impl MaintenanceService {
    pub(crate) fn new(api: Api) -> Self {
        MaintenanceService { api }
    }
}

#[tonic::async_trait]
impl PbMaintenanceService for MaintenanceService {
    async fn alarm(&self, request: Request<PbAlarmRequest>) -> Result<Response<PbAlarmResponse>, Status> {
        if request.into_inner().action != ALARM_GET {
            return Err(unsupported("Maintenance.Alarm other than listing alarms (k3rs raises none)"));
        }
        let revision = self.api.store.current_revision().await.map_err(store_status)?;
        Ok(Response::new(PbAlarmResponse { header: header(revision), alarms: Vec::new() }))
    }

    async fn status(&self, _request: Request<PbStatusRequest>) -> Result<Response<PbStatusResponse>, Status> {
        let st = self.api.store.status().await.map_err(store_status)?;
        // There is no raft log: the revision stands in for its index, which etcd clients
        // only display or compare between members.
        let index = u64::try_from(st.revision.0).unwrap_or(0);
        Ok(Response::new(PbStatusResponse {
            header: header(st.revision),
            version: ETCD_VERSION.to_string(),
            db_size: st.db_size,
            leader: MEMBER_ID,
            raft_index: index,
            raft_term: RAFT_TERM,
            raft_applied_index: index,
            errors: Vec::new(),
            db_size_in_use: st.db_size_in_use,
            is_learner: false,
            ..Default::default()
        }))
    }

    async fn defragment(
        &self,
        _request: Request<PbDefragmentRequest>,
    ) -> Result<Response<PbDefragmentResponse>, Status> {
        Err(unsupported("Maintenance.Defragment (the k3rs store reclaims space itself after compaction)"))
    }

    async fn hash(&self, _request: Request<PbHashRequest>) -> Result<Response<PbHashResponse>, Status> {
        Err(unsupported("Maintenance.Hash"))
    }

    async fn hash_kv(&self, _request: Request<PbHashKvRequest>) -> Result<Response<PbHashKvResponse>, Status> {
        Err(unsupported("Maintenance.HashKV"))
    }

    type SnapshotStream = Pin<Box<dyn Stream<Item = Result<PbSnapshotResponse, Status>> + Send>>;

    async fn snapshot(&self, _request: Request<PbSnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(unsupported("Maintenance.Snapshot (back up the k3rs database file instead)"))
    }

    async fn move_leader(
        &self,
        _request: Request<PbMoveLeaderRequest>,
    ) -> Result<Response<PbMoveLeaderResponse>, Status> {
        Err(unsupported("Maintenance.MoveLeader (k3rs has a single member)"))
    }

    async fn downgrade(&self, _request: Request<PbDowngradeRequest>) -> Result<Response<PbDowngradeResponse>, Status> {
        Err(unsupported("Maintenance.Downgrade"))
    }
}
