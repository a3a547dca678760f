//! PKI made on first boot: certificate authorities, serving and client certificates, the
//! service-account signing key and the admin kubeconfig.
