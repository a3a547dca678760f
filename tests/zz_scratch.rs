use std::sync::Arc;
use axum::extract::Request;
use k3rs::apiserver::{ApiServer, Identity};
use k3rs::store::sqlite::{SqliteOptions, SqliteStore};
use tower::ServiceExt;

#[tokio::test(flavor = "multi_thread")]
async fn scratch_http_server() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).unwrap();
    let api = ApiServer::new(Arc::new(store));
    api.bootstrap().await.unwrap();
    let router = api.router();
    let app = axum::Router::new().fallback(move |mut req: Request| {
        let router = router.clone();
        async move {
            req.extensions_mut().insert(Identity::new("system:admin", &["system:masters"]));
            router.oneshot(req).await.unwrap()
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:18080").await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(600), axum::serve(l, app)).await.ok();
}
