//! Small helpers shared by components: address ranges and the data-dir lock file.
pub mod cidr;
pub mod lockfile;
