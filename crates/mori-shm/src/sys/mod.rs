//! The operating-system side of regions: files under `/dev/shm`, mappings, processes.
//!
//! Everything here speaks bytes and file descriptors only; the region format and the public
//! handles live above it. The one module with `unsafe` code is [`map`].

pub(crate) mod file;
pub(crate) mod map;
pub(crate) mod proc;
