//! Typed sharing of Rust values: the traits behind `#[derive(Frame)]`, the column views a
//! reader gets, and [`share_typed`].
//!
//! Why a derive rather than `Value`: a `Value` is an owned copy of the data in R's vocabulary,
//! built before it is written (so twice the memory) and read back by matching on R types. A
//! derived struct is written straight from its fields into one region in one pass (only the
//! conversions R's layout needs are made: `bool` to R's 4-byte logicals, `None` to NA, the
//! list of string slices), and its generated view type reads each field in place, typed, after
//! one check of the region's shape when it is attached.
//!
//! | field type | R type | view field |
//! |---|---|---|
//! | `Vec<f64>`, `Vec<Option<f64>>` | double (`None` is `NA_real_`) | [`DoubleColumn`] (`&[f64]`) |
//! | `Vec<i32>`, `Vec<Option<i32>>` | integer (`None` is `NA`, i.e. `i32::MIN`) | [`IntegerColumn`] (`&[i32]`) |
//! | `Vec<bool>`, `Vec<Option<bool>>` | logical | [`LogicalColumn`] |
//! | `Vec<String>`, `Vec<Option<String>>` | character | [`StringColumn`] |
//! | a struct that derives `Frame` | list (or data frame) | its view type |
//!
//! A struct is written as a named list whose names are its field names, or with
//! `#[mori(data_frame)]` as an R data frame (equal-length columns, `class = "data.frame"`),
//! which R reads with `mori::map_shared(name)` as a `data.frame`.

mod columns;

pub use columns::{ColumnElement, DoubleColumn, IntegerColumn, LogicalColumn, StringColumn};

use mori_format::Source;
use mori_format::layout::SexpType;

use crate::{Error, Result, Shared, SharedView, share_source};

/// A value that is written as one element of a region: a column (`Vec<f64>`, `Vec<String>`,
/// ...) or a struct deriving [`Frame`](derive@crate::Frame).
///
/// ```
/// use mori_shm::Column;
/// let flags = vec![true, false];
/// let shared = mori_shm::share_typed(&flags)?;
/// assert_eq!(shared.as_logical(), Some(&[1, 0][..]));
/// # Ok::<(), mori_shm::Error>(())
/// ```
pub trait Column {
    /// The owned conversions [`Column::source`] borrows from (R's logicals for `bool`, NA for
    /// `None`, the list of string slices): nothing for `Vec<f64>` and `Vec<i32>`, which are
    /// written from their own memory.
    type Prepared<'a>
    where
        Self: 'a;

    /// What a reader gets for it.
    type View: FromShared;

    /// Makes the conversions.
    fn prepare(&self) -> Self::Prepared<'_>;

    /// The value as the writer's [`Source`], borrowing `self` and `prepared`.
    fn source<'a, 'b>(&'a self, prepared: &'b Self::Prepared<'a>) -> Source<'b>
    where
        'a: 'b;
}

/// A typed view made from a [`SharedView`], after checking that the value has the right shape
/// (type, names, nesting); the view then reads in place.
///
/// ```
/// use mori_shm::{DoubleColumn, FromShared};
/// let shared = mori_shm::share_f64(&[1.5, 2.5])?;
/// let col = DoubleColumn::from_shared(shared.view())?;
/// assert_eq!(&col[..], &[1.5, 2.5]);
/// assert!(mori_shm::IntegerColumn::from_shared(shared.view()).is_err());
/// # Ok::<(), mori_shm::Error>(())
/// ```
pub trait FromShared: Sized {
    /// Checks `view` and wraps it.
    fn from_shared(view: SharedView) -> Result<Self>;

    /// The view it reads (to send it elsewhere, or to look at it untyped).
    fn shared_view(&self) -> &SharedView;
}

impl FromShared for SharedView {
    fn from_shared(view: SharedView) -> Result<Self> {
        Ok(view)
    }

    fn shared_view(&self) -> &SharedView {
        self
    }
}

/// Shares a typed value (a column, or a struct deriving [`Frame`](derive@crate::Frame)) as one
/// region, written in one pass.
///
/// ```
/// let names = vec!["ada".to_string(), "grace".to_string()];
/// let shared = mori_shm::share_typed(&names)?;
/// let view: mori_shm::StringColumn = mori_shm::map_typed(&shared.view().identifier().unwrap())?;
/// assert_eq!(view.iter().collect::<Vec<_>>(), [Some("ada"), Some("grace")]);
/// # Ok::<(), mori_shm::Error>(())
/// ```
pub fn share_typed<T: Column + ?Sized>(value: &T) -> Result<Shared> {
    let prepared = value.prepare();
    share_source(&value.source(&prepared))
}

/// Attaches the value named `identifier` (as [`map_shared`](crate::map_shared)) and checks it
/// into the typed view `V`.
pub fn map_typed<V: FromShared>(identifier: &str) -> Result<V> {
    V::from_shared(crate::map_shared(identifier)?)
}

/// Checks that `view` holds a value of type `expected`.
pub(crate) fn expect_type(view: &SharedView, expected: SexpType) -> Result<()> {
    let found = view.sexptype();
    if found == expected {
        Ok(())
    } else {
        Err(Error::WrongType {
            name: view.identifier().unwrap_or_else(|| view.name().to_owned()),
            expected: format!("a {} vector", expected.r_name()),
            found: format!("a {} vector", found.r_name()),
        })
    }
}

/// Support for the code `#[derive(Frame)]` generates; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use mori_format::Source;
    pub use serde;

    use crate::{Error, Result, SharedView};

    /// The elements of a list by name, its `names` decoded once.
    pub struct Fields<'v> {
        view: &'v SharedView,
        names: Vec<mori_format::value::RString>,
    }

    impl<'v> Fields<'v> {
        /// The fields of `view`, which must be a list (or data frame) with at least `len`
        /// elements.
        pub fn new(view: &'v SharedView, len: usize) -> Result<Self> {
            list_of(view, len)?;
            Ok(Self {
                view,
                names: view.names()?.unwrap_or_default(),
            })
        }

        /// The element named `field` checked into `V`; `hint` is where the writer put it (the
        /// field's position in its struct), looked at first.
        pub fn get<V: super::FromShared>(&self, hint: usize, field: &str) -> Result<V> {
            let is = |i: &usize| self.names.get(*i).and_then(|n| n.as_str()) == Some(field);
            let index = Some(hint)
                .filter(is)
                .or_else(|| (0..self.names.len()).find(is))
                .ok_or_else(|| Error::WrongType {
                    name: label(self.view),
                    expected: format!("a list with an element named {field:?}"),
                    found: "none".to_owned(),
                })?;
            V::from_shared(self.view.get(index)?)
        }
    }

    fn label(view: &SharedView) -> String {
        view.identifier().unwrap_or_else(|| view.name().to_owned())
    }

    /// Checks that `view` is a list (or data frame) with at least `len` elements; the fields
    /// are then found by name, so a frame with more columns (say, one R wrote) reads as the
    /// columns the view names.
    pub fn list_of(view: &SharedView, len: usize) -> Result<()> {
        super::expect_type(view, mori_format::layout::SexpType::List)?;
        if view.len() < len {
            return Err(Error::WrongType {
                name: view.identifier().unwrap_or_else(|| view.name().to_owned()),
                expected: format!("a list of at least {len} elements"),
                found: format!("{} elements", view.len()),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
