//! The external backend: the same [`Store`](super::Store) over a real etcd cluster.

/// Where and how to reach etcd.
#[derive(Clone, Debug, Default)]
pub struct EtcdOptions {
    /// `http://host:port` or `https://host:port` URLs.
    pub endpoints: Vec<String>,
    /// Every key the store reads or writes is put under this prefix (empty: none).
    pub prefix: Vec<u8>,
}

/// See the module documentation.
pub struct EtcdStore {}

impl EtcdStore {
    pub async fn connect(_opts: EtcdOptions) -> super::Result<EtcdStore> {
        unimplemented!("in progress")
    }
}
