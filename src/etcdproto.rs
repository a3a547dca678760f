//! etcd's v3 gRPC API as Rust: the messages, clients and servers that `build.rs` generates
//! from the definitions vendored in `proto/` (etcd v3.7.2). The etcd API server
//! (`crate::etcdapi`) implements the servers, the external-etcd store backend
//! (`crate::store::etcd`) and the tests drive the clients.
//!
//! The generated modules keep etcd's package names, which their code refers to each other
//! by. The `Pb*` names below are this crate's short names for what the server and the store
//! use, so that a request type reads as the protocol's (`PbDeleteRequest` is etcd's
//! `DeleteRangeRequest`) without the package path.

/// etcd's key-value and event messages (package `mvccpb`).
pub mod mvccpb {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
}

/// etcd's users, roles and permissions (package `authpb`); the RPC messages refer to them.
pub mod authpb {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/authpb.rs"));
}

/// etcd's RPC services and their messages (package `etcdserverpb`).
pub mod etcdserverpb {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
}

pub use etcdserverpb::cluster_client::ClusterClient;
pub use etcdserverpb::kv_client::KvClient;
pub use etcdserverpb::lease_client::LeaseClient;
pub use etcdserverpb::maintenance_client::MaintenanceClient;
pub use etcdserverpb::watch_client::WatchClient;

pub use etcdserverpb::cluster_server::{Cluster as PbClusterService, ClusterServer as PbClusterServer};
pub use etcdserverpb::kv_server::{Kv as PbKvService, KvServer as PbKvServer};
pub use etcdserverpb::lease_server::{Lease as PbLeaseService, LeaseServer as PbLeaseServer};
pub use etcdserverpb::maintenance_server::{
    Maintenance as PbMaintenanceService, MaintenanceServer as PbMaintenanceServer,
};
pub use etcdserverpb::watch_server::{Watch as PbWatchService, WatchServer as PbWatchServer};

pub use etcdserverpb::compare::TargetUnion as PbTargetUnion;
pub use etcdserverpb::request_op::Request as PbTxnOpRequest;
pub use etcdserverpb::response_op::Response as PbTxnOpResponse;
pub use etcdserverpb::watch_request::RequestUnion as PbWatchRequestUnion;
pub use etcdserverpb::{
    AlarmRequest as PbAlarmRequest, AlarmResponse as PbAlarmResponse, CompactionRequest as PbCompactionRequest,
    CompactionResponse as PbCompactionResponse, Compare as PbCompare, DefragmentRequest as PbDefragmentRequest,
    DefragmentResponse as PbDefragmentResponse, DeleteRangeRequest as PbDeleteRequest,
    DeleteRangeResponse as PbDeleteResponse, DowngradeRequest as PbDowngradeRequest,
    DowngradeResponse as PbDowngradeResponse, HashKvRequest as PbHashKvRequest, HashKvResponse as PbHashKvResponse,
    HashRequest as PbHashRequest, HashResponse as PbHashResponse, LeaseGrantRequest as PbLeaseGrantRequest,
    LeaseGrantResponse as PbLeaseGrantResponse, LeaseKeepAliveRequest as PbLeaseKeepAliveRequest,
    LeaseKeepAliveResponse as PbLeaseKeepAliveResponse, LeaseLeasesRequest as PbLeaseLeasesRequest,
    LeaseLeasesResponse as PbLeaseLeasesResponse, LeaseRevokeRequest as PbLeaseRevokeRequest,
    LeaseRevokeResponse as PbLeaseRevokeResponse, LeaseStatus as PbLeaseStatus,
    LeaseTimeToLiveRequest as PbLeaseTimeToLiveRequest, LeaseTimeToLiveResponse as PbLeaseTimeToLiveResponse,
    Member as PbMember, MemberAddRequest as PbMemberAddRequest, MemberAddResponse as PbMemberAddResponse,
    MemberListRequest as PbMemberListRequest, MemberListResponse as PbMemberListResponse,
    MemberPromoteRequest as PbMemberPromoteRequest, MemberPromoteResponse as PbMemberPromoteResponse,
    MemberRemoveRequest as PbMemberRemoveRequest, MemberRemoveResponse as PbMemberRemoveResponse,
    MemberUpdateRequest as PbMemberUpdateRequest, MemberUpdateResponse as PbMemberUpdateResponse,
    MoveLeaderRequest as PbMoveLeaderRequest, MoveLeaderResponse as PbMoveLeaderResponse, PutRequest as PbPutRequest,
    PutResponse as PbPutResponse, RangeRequest as PbRangeRequest, RangeResponse as PbRangeResponse,
    RangeStreamResponse as PbRangeStreamResponse, RequestOp as PbTxnRequestOp, ResponseHeader as PbResponseHeader,
    ResponseOp as PbResponseOp, SnapshotRequest as PbSnapshotRequest, SnapshotResponse as PbSnapshotResponse,
    StatusRequest as PbStatusRequest, StatusResponse as PbStatusResponse, TxnRequest as PbTxnRequest,
    TxnResponse as PbTxnResponse, WatchRequest as PbWatchRequest, WatchResponse as PbWatchResponse,
};
pub use mvccpb::{Event as PbEvent, KeyValue as PbKeyValue};

/// The `range_end` that makes a request cover every key starting with `prefix`, as etcd's
/// protocol spells it: the prefix with its last byte incremented, or `\0` ("to the end of
/// the key space") when no such key exists (an empty prefix, or one of only 0xff bytes).
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    crate::store::prefix_end(prefix).map_or_else(|| vec![0], |end| end.to_vec())
}

#[cfg(test)]
mod tests {
    use super::prefix_range_end;

    #[test]
    fn prefix_range_ends_follow_etcd() {
        assert_eq!(prefix_range_end(b"/a/"), b"/a0");
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b""), [0]);
        assert_eq!(prefix_range_end(b"\xff\xff"), [0]);
    }
}
