//! Helpers shared by the integration tests: each test binary includes this module with
//! `mod common;` and uses what it needs.
#![allow(dead_code)]

pub mod busybox;
pub mod cluster;
pub mod etcd;
pub mod kubectl_http;
pub mod tls;
