//! Small helpers shared by components: address ranges, the data-dir lock file, mountinfo,
//! time zones from the system zoneinfo.
pub mod cidr;
pub mod lockfile;
pub mod mountinfo;
pub mod tz;
