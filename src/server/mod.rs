//! `k3rs server`: validates its configuration, takes the data-dir lock, opens the datastore
//! and starts the components in order; on SIGTERM or SIGINT it drains them and stops.
