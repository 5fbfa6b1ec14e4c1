#![doc = include_str!("../README.md")]
//! Shared-memory regions by name, byte-compatible with R's mori.
//!
//! A value shared here is written once into a region under `/dev/shm`, named like
//! `/mori_4d1b_1`, and any process of the same user (Rust with this crate, or R with
//! `mori::map_shared()`) maps it read-only by that name and reads it in place: no copy, no
//! serialization, one physical copy of the data however many processes read it.
//!
//! ```
//! use mori_shm::Source;
//!
//! // Creator: one copy, from our slices straight into the new region.
//! let x: Vec<f64> = (0..1000).map(f64::from).collect();
//! let shared = mori_shm::share_data_frame(vec![
//!     ("x", Source::Double(&x)),
//!     ("label", Source::Strings(&["a"; 1000])),
//! ])?;
//!
//! // Consumer (usually another process): attach by name, at the root or at a path.
//! let name = format!("{}[1]", shared.name()); // R's 1-based path: column x
//! let column = mori_shm::map_shared(&name)?;
//! assert_eq!(column.as_f64().unwrap()[999], 999.0); // a slice of the mapping
//! assert_eq!(mori_shm::shared_name(&column).as_deref(), Some(name.as_str()));
//!
//! drop(shared); // unlinks the name; existing mappings stay valid
//! assert_eq!(column.as_f64().unwrap().len(), 1000);
//! # Ok::<(), mori_shm::Error>(())
//! ```
//!
//! # Creating
//! [`share_f64`], [`share_i32`], [`share_raw`], [`share_strings`], [`share_list`] and
//! [`share_data_frame`] borrow the caller's data through `mori-format`'s [`Source`] and write
//! it straight into the mapping: no intermediate owned value, one copy in all. [`share`] takes
//! an owned [`Value`](mori_format::value::Value), [`share_source_with`] any source and writer
//! options (such as the attribute form for R >= 4.6).
//!
//! Creation opens `/dev/shm/mori_<pid hex>_<random hex>` with `O_CREAT|O_EXCL`, mode 0600, and
//! sizes it. The name has the shape R's mori gives its names (R's `prune_shared()` reads the pid
//! in it), but where R has a counter it has 32 fresh bits from the operating system's CSPRNG:
//! `/dev/shm` is world-readable, so names that followed from the ones listed there could be
//! created first by another user. A name that exists already is never opened; creation tries
//! another (16 in all, then [`Error::NameInUse`]). Every
//! page then exists before anything is stored through a mapping, so a full `/dev/shm` is an
//! [`Error::OutOfSpace`] naming the size asked and the space free, never a `SIGBUS`:
//!
//! - The data of vectors of 32 KiB and more go in with `pwrite`: the kernel allocates the
//!   pages and copies the caller's slice straight into them, with none of the page faults that
//!   stores through a fresh shared mapping cost (sharing 200 MB of doubles takes about 0.6 of
//!   the CPU time of a `memcpy` into fresh memory, `docs/benchmarks.md`). A full file system
//!   fails the write with `ENOSPC`.
//! - `fallocate` then reserves every page the writes did not fill, and headers, tables,
//!   strings and small vectors are written in place through a read-write mapping (pre-faulted
//!   over the large parts it writes, asking for huge pages from 2 MiB), which is sealed
//!   read-only afterwards.
//!
//! A request larger than the free space fails before any page is touched. Either way each byte
//! is copied once. Any failure after the file exists unlinks it.
//!
//! # Attaching
//! [`map_shared`] parses the identifier with R's grammar, checks that the file is one of ours
//! (below), maps it read-only and lazily
//! (no pre-faulting: attaching costs the same for 1 KB and 1 GB), validates the region with
//! `mori-format` (work proportional to its number of elements, not its bytes), resolves the
//! bracketed path and returns a [`SharedView`]. Views of elements ([`SharedView::get`]) keep
//! the whole mapping alive through an `Arc`, so they may outlive the list they came from.
//!
//! Anyone can put a file in `/dev/shm`, under any name, so a name in a message or a task
//! result says nothing about whose file it is. A file that another user owns or can write
//! could be truncated or rewritten by that user while we hold a `&[f64]` into its mapping:
//! values would change under safe code, and reads past a truncation fault with `SIGBUS`.
//! Every attach ([`map_shared`], deserializing a [`SharedView`], `mori show` and `mori cat`)
//! therefore opens the file with `O_NOFOLLOW` (and `O_NONBLOCK`, so a FIFO cannot block it)
//! and checks, with `fstat` on the opened descriptor (the file checked is the file mapped),
//! that it is a regular file, owned by our effective uid, with no permission bits for group or
//! others (`mode & 0o077 == 0`), as every region this crate or R's mori creates is. Anything
//! else is [`Error::Untrusted`], whose [`Untrusted`] reason says which check failed:
//!
//! ```
//! use std::os::unix::fs::PermissionsExt;
//! use mori_shm::{Error, Untrusted};
//!
//! let shared = mori_shm::share_f64(&[1.0])?;
//! let file = format!("/dev/shm{}", shared.name());
//! std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
//! assert!(matches!(
//!     mori_shm::map_shared(shared.name()),
//!     Err(Error::Untrusted { reason: Untrusted::Mode { mode: 0o644 }, .. })
//! ));
//! # Ok::<(), mori_shm::Error>(())
//! ```
//!
//! # Lifetime and prune
//! The creator's [`Shared`] owns the name, and so does every view taken from it in the
//! creator's process ([`Shared::view`], [`SharedView::get`], [`SharedView::get_named`], nested):
//! the name is unlinked when the last of them is dropped, so a leaf may be sent to a consumer
//! after the root handle is gone. Mappings made before that (in any process) stay valid; new
//! [`map_shared`] calls fail with [`Error::NotFound`]. Consumers (views made by [`map_shared`]
//! or by deserializing) never unlink. Keep the [`Shared`], or a view taken from it, alive until
//! consumers have attached.
//!
//! A region can change hands: a [`Shared`] serialized inside [`handing_over`] gives its name
//! to the receiver, whose deserialized [`Shared`] owns it (and unlinks it when dropped) while
//! the sender's handles no longer do. A task that returns a [`Shared`] uses this: the daemon
//! builds the region, the host reads it in place and owns it. The receiver rewrites the
//! region's owner record with its own pid, so `prune` judges the region by the receiver's life,
//! not the creator's (see [`handing_over`]).
//!
//! A creator that dies without dropping its handles (killed, crashed) leaves an orphan.
//! [`prune`] removes the regions whose creator is dead, and [`list_regions`] reports each
//! region's [`Status`]. Unlike R's rule (the pid in the name exists), pid reuse cannot protect
//! an orphan or expose a live region: each region records its creator's start time in an
//! extended attribute beside the bytes, and a live pid with another start time is not the
//! creator. Regions without the record (R's, or on kernels before 6.6 without tmpfs user
//! extended attributes) fall back to R's rule. The caveat R has remains: pids belong to a PID
//! namespace, so a process in another namespace that shares `/dev/shm` (a container run with
//! `--ipc=host`) looks dead here, and `prune` would remove its live regions. Do not prune a
//! `/dev/shm` shared across PID namespaces.
//!
//! # Typed sharing of Rust structs
//! `#[derive(Frame)]` on a struct of columns (`Vec<f64>`, `Vec<i32>`, `Vec<bool>`,
//! `Vec<String>`, their `Vec<Option<_>>` forms as NA, and nested derived structs) writes it as one
//! region in one pass, a named list or, with `#[mori(data_frame)]`, an R data frame; the
//! generated `<Name>View` reads each field in place after one check of the region's shape, and
//! travels between processes as the region's name. [`share_typed`] also shares a single column
//! or slice. See [`Column`] for the types.
//!
//! ```
//! use mori_shm::{Frame, map_typed, share_typed};
//!
//! #[derive(Frame)]
//! #[mori(data_frame)]
//! struct Trades {
//!     price: Vec<f64>,
//!     size: Vec<i32>,
//!     venue: Vec<Option<String>>,
//! }
//!
//! let trades = Trades {
//!     price: vec![101.5, 101.25],
//!     size: vec![100, 250],
//!     venue: vec![Some("XNAS".into()), None],
//! };
//! let shared = share_typed(&trades)?;
//! // In another process: attach by name and read typed, in place.
//! let view: TradesView = map_typed(&shared.view().identifier().unwrap())?;
//! assert_eq!(&view.price[..], &[101.5, 101.25]);
//! assert_eq!(view.venue.iter().collect::<Vec<_>>(), [Some("XNAS"), None]);
//! # Ok::<(), mori_shm::Error>(())
//! ```
//!
//! # Passing handles to other processes
//! With serde, a [`Shared`] or [`SharedView`] serializes as its identifier, a few dozen bytes
//! whatever the size of the value, and a [`SharedView`] deserializes by attaching. A task
//! argument holding a shared handle therefore sends only the name.
//!
//! # Safety
//! Mapping a file is `unsafe` in Rust because another process could change or truncate it. The
//! crate's only `unsafe` code sits in one small module that explains why it holds here: regions
//! are write-once before their name escapes, consumers map read-only, mode 0600 keeps other
//! users out of our regions and the attach checks keep us out of theirs, and every view is
//! bounds-checked against the mapping. The residual risk is a process of the same user (or
//! root) that truncates a region file while it is mapped: reads of the lost pages then fault
//! with `SIGBUS`, as they would in R.
//!
//! Linux only: regions live in the tmpfs at `/dev/shm`.
//!
//! # Apache Arrow (feature `arrow`)
//! With the `arrow` feature, `share_record_batch` shares an Arrow `RecordBatch` as one R data frame
//! (`Float64`, `Int32`, `Boolean`, string columns, and dictionaries of strings as factors; nulls
//! become R's NA; any other column type is an [`Error::UnsupportedArrowType`] naming the column),
//! and `to_record_batch` and `column_to_arrow` turn a shared data frame or vector back into Arrow
//! arrays. Double and integer columns come back without a copy: the array's buffer is the region's
//! bytes and keeps the mapping alive. Logicals (R stores 32 bits per element, Arrow one), strings
//! (R's layout is not Arrow's offsets) and the nulls of a batch being shared (R has no validity
//! bitmap: a copy with NA in the null slots) are copied once; the module `mori_shm::arrow` lists
//! every case. Polars is not supported: its dependency tree is far heavier than this crate's;
//! convert through Arrow record batches.
//!
//! ```
//! # #[cfg(feature = "arrow")]
//! # {
//! use std::sync::Arc;
//! use arrow_array::{ArrayRef, Float64Array, RecordBatch};
//!
//! let x = Float64Array::from(vec![Some(0.5), None]);
//! let batch = RecordBatch::try_from_iter([("x", Arc::new(x) as ArrayRef)]).unwrap();
//! let shared = mori_shm::share_record_batch(&batch)?; // R reads data.frame(x = c(0.5, NA))
//!
//! let frame = mori_shm::map_shared(shared.name())?;
//! let back = mori_shm::to_record_batch(&frame)?;
//! assert_eq!(back.column(0).as_ref(), batch.column(0).as_ref());
//! # }
//! # Ok::<(), mori_shm::Error>(())
//! ```
//!
//! # The `mori` command (feature `cli`)
//! `mori ls`, `mori show NAME[path]`, `mori cat NAME[path]`, `mori prune` and
//! `mori share FILE.json`; see `mori --help` for their output and exit codes. The feature is
//! on by default, so `cargo install mori-shm` installs the command; libraries depend with
//! `default-features = false` and build none of its clap, signal-hook and serde_json.
#![deny(unsafe_code)]

// The derive names this crate `::mori_shm`, also in this crate's own tests.
extern crate self as mori_shm;

#[cfg(feature = "arrow")]
pub mod arrow;
mod build;
mod error;
mod frame;
mod name;
mod owner;
#[doc(hidden)]
pub mod probes;
mod prune;
mod region;
#[cfg(feature = "cli")]
mod share_json;
#[cfg(all(test, feature = "cli"))]
mod share_json_tests;
mod shared;
mod sys;
mod wire;

#[cfg(feature = "arrow")]
pub use arrow::{column_to_arrow, share_record_batch, to_record_batch};
pub use build::{VectorElement, share_with};
pub use error::{Error, Result, Untrusted};
#[doc(hidden)]
pub use frame::__private;
pub use frame::{
    Column, ColumnElement, DoubleColumn, FromShared, IntegerColumn, LogicalColumn, StringColumn,
    map_typed, share_typed,
};
/// `#[derive(Frame)]`: see [`Column`] for the field types and the generated view.
pub use mori_derive::Frame;
pub use mori_format::{self, Source, View, WriteOptions};
pub use owner::Status;
pub use prune::{RegionInfo, list_regions, prune};
pub use shared::{
    Shared, SharedView, is_shared, map_shared, share, share_data_frame, share_f64, share_i32,
    share_list, share_raw, share_source, share_source_with, share_strings, shared_name,
};
pub use wire::handing_over;

/// Entry points for fuzz targets: they take arbitrary bytes and must never panic.
#[doc(hidden)]
pub mod fuzzing {
    /// Decode `data` as everything this crate reads from the system: an owner record, a
    /// `/proc/<pid>/stat` line and a region file name.
    pub fn system_records(data: &[u8]) {
        let _ = crate::owner::decode_record(data);
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = crate::sys::proc::parse_start_time(text);
            let _ = crate::name::creator_pid(text);
        }
    }

    /// Write `data` into a new region as it is (at most 1 MiB; the name is this process's and
    /// is removed on return), attach it, and convert what it holds to Arrow as
    /// [`to_record_batch`](crate::to_record_batch) and
    /// [`column_to_arrow`](crate::column_to_arrow) would for a region someone else wrote.
    #[cfg(feature = "arrow")]
    pub fn region_to_arrow(data: &[u8]) {
        if data.is_empty() || data.len() > 1 << 20 {
            return;
        }
        let Ok((mapping, owner)) = crate::region::create(data.len(), |r| r.write_at(0, data))
        else {
            return;
        };
        let Ok(shared) = crate::Shared::created(mapping, owner) else {
            return;
        };
        let _ = crate::to_record_batch(&shared);
        let _ = crate::column_to_arrow(&shared);
        for i in 0..shared.len().min(16) {
            if let Ok(column) = shared.get(i) {
                let _ = crate::column_to_arrow(&column);
            }
        }
    }

    /// Decode `data` as the JSON input of `mori share`, and plan and write the value it gives in
    /// memory, as `mori share` would into a region (no region is created). Feature `cli`.
    #[cfg(feature = "cli")]
    pub fn share_json(data: &[u8]) {
        let Ok(value) = crate::share_json::decode(data) else {
            return;
        };
        let source = mori_format::Source::Value(&value);
        if let Ok(plan) = source.plan(&mori_format::WriteOptions::default()) {
            // The input is at most a few MiB under a fuzzer; its region is of that order.
            if plan.len() <= 16 << 20 {
                let mut buf = vec![0u8; plan.len()];
                let _ = plan.write_into(&mut buf);
            }
        }
    }
}
