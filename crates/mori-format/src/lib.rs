#![doc = include_str!("../README.md")]
//! The byte layout of values shared through mori regions, byte-compatible with R's mori 0.2.
//!
//! No OS code lives here: this crate turns values into bytes in a caller-provided buffer and
//! validates bytes before handing out zero-copy views of them. A region written here can be
//! mapped by R's `mori::map_shared()`, and a region R's `mori::share()` wrote reads here.
//!
//! - [`mod@write`]: size a value exactly ([`encoded_len`], [`Source::encoded_len`]), then write it
//!   in one pass ([`write()`](write::write), [`Source::write`]). [`Source`] borrows the caller's
//!   slices so the region is the only copy.
//! - [`mod@read`]: [`Region::new`] validates every header, offset and table entry, then [`View`]s
//!   give `&[f64]`, `&[i32]`, `&[u8]`, `&[[f64; 2]]`, strings and lists without copying.
//! - [`path`]: R's identifiers `/mori_<pid>_<counter>[i,j,...]`, resolved by
//!   [`Region::resolve`].
//! - [`value`]: the owned model that [`View::to_value`] copies out to.
//! - [`rser`]: the subset of R's serialization used by attribute blobs.
//!
//! ```
//! use mori_format::value::Value;
//! use mori_format::{encoded_len, read, write, AlignedBuf, View, WriteOptions};
//!
//! let df = Value::data_frame(
//!     [("a", Value::double([1.5, 2.5])), ("b", Value::character(["x", "y"]))],
//!     2,
//! );
//! let opts = WriteOptions::default();
//! let mut region = AlignedBuf::zeroed(encoded_len(&df, &opts)?);
//! write(&df, &mut region, &opts)?;
//!
//! let View::List(cols) = read(&region)? else { panic!("a data frame is a list") };
//! let View::Double(a) = cols.get(0)? else { panic!("column a is double") };
//! assert_eq!(a.data(), &[1.5, 2.5]); // borrowed from `region`, not copied
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod aligned;
pub mod error;
pub mod layout;
pub mod path;
pub mod read;
pub mod rser;
pub mod value;
pub mod write;

pub use aligned::AlignedBuf;
pub use error::{ReadError, ResolveError, WriteError};
pub use path::{Identifier, PathError, RegionName};
pub use read::{List, Region, Str, Strings, Vector, View, read};
pub use write::{Plan, Source, WriteOptions, encoded_len, write};

/// Entry points for fuzz targets: they take arbitrary bytes and must never panic.
#[doc(hidden)]
pub mod fuzzing {
    use crate::{AlignedBuf, Identifier, Region, View};

    /// Read `data` as a region and walk every view, decoding everything decodable.
    pub fn region_read(data: &[u8]) {
        let buf = AlignedBuf::from_bytes(data);
        let Ok(region) = Region::new(&buf) else {
            return;
        };
        walk(region.root());
        let _ = region.root().to_value();
        let _ = region.resolve(&[0, 0]);
    }

    fn walk(view: View<'_>) {
        let _ = view.attributes();
        match view {
            View::Character(s) => {
                for x in s.iter() {
                    let _ = x.as_str();
                }
            }
            View::List(l) => {
                let _ = l.names();
                let _ = l.names_in_place();
                for v in l.iter().flatten() {
                    walk(v);
                }
            }
            View::Double(v) => {
                let _ = v.data().iter().sum::<f64>();
            }
            _ => {}
        }
    }

    /// Parse `data` as an identifier; a parsed one must print back to itself, modulo leading
    /// zeros in the hex runs.
    pub fn path_parse(data: &[u8]) {
        let Ok(s) = std::str::from_utf8(data) else {
            return;
        };
        if let Ok(id) = Identifier::parse(s) {
            let again = Identifier::parse(&id.to_string());
            assert_eq!(again.as_ref(), Ok(&id), "identifier does not round-trip");
        }
    }
}
