//! The Cluster service: the member list is this one server, reachable on its socket;
//! membership cannot change.
use tonic::{Request, Response, Status};

use super::{header, store_status, unsupported, Api, MEMBER_ID};
use crate::etcdproto::{
    PbClusterService, PbMember, PbMemberAddRequest, PbMemberAddResponse, PbMemberListRequest, PbMemberListResponse,
    PbMemberPromoteRequest, PbMemberPromoteResponse, PbMemberRemoveRequest, PbMemberRemoveResponse,
    PbMemberUpdateRequest, PbMemberUpdateResponse,
};

pub(crate) struct ClusterService {
    api: Api,
}

impl ClusterService {
    pub(crate) fn new(api: Api) -> Self {
        ClusterService { api }
    }
}

const FIXED: &str = "changing cluster membership (k3rs serves the etcd API from a single embedded member)";

#[tonic::async_trait]
impl PbClusterService for ClusterService {
    async fn member_add(&self, _request: Request<PbMemberAddRequest>) -> Result<Response<PbMemberAddResponse>, Status> {
        Err(unsupported(FIXED))
    }

    async fn member_remove(
        &self,
        _request: Request<PbMemberRemoveRequest>,
    ) -> Result<Response<PbMemberRemoveResponse>, Status> {
        Err(unsupported(FIXED))
    }

    async fn member_update(
        &self,
        _request: Request<PbMemberUpdateRequest>,
    ) -> Result<Response<PbMemberUpdateResponse>, Status> {
        Err(unsupported(FIXED))
    }

    async fn member_list(
        &self,
        _request: Request<PbMemberListRequest>,
    ) -> Result<Response<PbMemberListResponse>, Status> {
        let revision = self.api.store.current_revision().await.map_err(store_status)?;
        let me = PbMember {
            id: MEMBER_ID,
            name: self.api.opts.member_name.clone(),
            peer_ur_ls: Vec::new(),
            client_ur_ls: vec![self.api.client_url.clone()],
            is_learner: false,
        };
        Ok(Response::new(PbMemberListResponse { header: header(revision), members: vec![me] }))
    }

    async fn member_promote(
        &self,
        _request: Request<PbMemberPromoteRequest>,
    ) -> Result<Response<PbMemberPromoteResponse>, Status> {
        Err(unsupported(FIXED))
    }
}
