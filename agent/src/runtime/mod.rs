//! The container runtime: OCI specs from pod specs, and (in `shim`) the single-threaded helper
//! process that creates and supervises one container through libcontainer.

pub mod sandbox;
pub mod seccomp;
pub mod shim;
pub mod spec;
