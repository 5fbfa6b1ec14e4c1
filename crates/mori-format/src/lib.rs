//! The byte layout of values shared through mori regions, byte-compatible with R's mori 0.2.
//!
//! No OS code lives here: this crate turns values into bytes in a caller-provided buffer and
//! validates bytes before handing out zero-copy views of them.
#![forbid(unsafe_code)]

pub mod value;
