//! Small helpers shared by components: address ranges, the data-dir lock file, mountinfo.
pub mod cidr;
pub mod lockfile;
pub mod mountinfo;
