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
/// It is implemented by [`SharedView`] (any value), the column views and the view types
/// `#[derive(Frame)]` generates; its hidden items are how a derived view checks a whole frame in
/// one pass, and are not meant to be written by hand.
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
    /// What the view expects of the value: checked by [`FromShared::from_shared`] before the
    /// view is built.
    #[doc(hidden)]
    const SHAPE: &'static __private::Shape;

    /// Builds the view from the values [`__private::resolve`] checked against
    /// [`FromShared::SHAPE`] (in depth-first order, a list before its elements); it cannot fail.
    #[doc(hidden)]
    fn from_parts(parts: &mut __private::Parts) -> Self;

    /// Checks `view` and wraps it.
    fn from_shared(view: SharedView) -> Result<Self> {
        let mut parts = __private::resolve(view, Self::SHAPE)?;
        Ok(Self::from_parts(&mut parts))
    }

    /// The view it reads (to send it elsewhere, or to look at it untyped).
    fn shared_view(&self) -> &SharedView;
}

impl FromShared for SharedView {
    const SHAPE: &'static __private::Shape = &__private::Shape::Any;

    fn from_parts(parts: &mut __private::Parts) -> Self {
        parts.next()
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

    use crate::{Error, Result, SharedView, View};

    use mori_format::layout::SexpType;

    /// What a view type expects of a value, as data: a derived view's shape names each field's
    /// shape, so one non-generic pass ([`resolve`]) checks a whole frame, and the generated code
    /// stays one short line per field however wide the frame is.
    #[derive(Debug)]
    pub enum Shape {
        /// Any value (a [`SharedView`] field).
        Any,
        /// A vector of this type (a column view).
        Vector(SexpType),
        /// A list (or data frame) with at least these named elements, each of its shape.
        Fields {
            /// The element names, in the writer's order (looked for there first).
            names: &'static [&'static str],
            /// The shape of each named element.
            shapes: &'static [&'static Self],
        },
    }

    impl Shape {
        /// How many views [`resolve`] makes for a value of this shape.
        fn parts(&self) -> usize {
            match self {
                Self::Any | Self::Vector(_) => 1,
                Self::Fields { shapes, .. } => 1 + shapes.iter().map(|s| s.parts()).sum::<usize>(),
            }
        }
    }

    /// The checked views of a value, in the order [`super::FromShared::from_parts`] takes them.
    pub struct Parts(std::vec::IntoIter<SharedView>);

    impl Parts {
        /// The next view.
        ///
        /// # Panics
        ///
        /// If a `from_parts` takes more views than its `SHAPE` made: a bug in the view type
        /// (the derive and the column views take exactly one per shape node).
        #[allow(clippy::should_implement_trait)]
        pub fn next(&mut self) -> SharedView {
            self.0
                .next()
                .expect("a view takes exactly the parts its shape resolved")
        }
    }

    /// Checks `view` against `shape` and returns its parts: the value itself, then (for a
    /// list) the parts of each named element in the shape's order.
    pub fn resolve(view: SharedView, shape: &Shape) -> Result<Parts> {
        let mut out = Vec::with_capacity(shape.parts());
        push(view, shape, &mut out)?;
        Ok(Parts(out.into_iter()))
    }

    fn push(view: SharedView, shape: &Shape, out: &mut Vec<SharedView>) -> Result<()> {
        match shape {
            Shape::Any => out.push(view),
            Shape::Vector(sexptype) => {
                super::expect_type(&view, *sexptype)?;
                out.push(view);
            }
            Shape::Fields { names, shapes } => {
                list_of(&view, names.len())?;
                // Read in place: a wide frame's names are many small strings.
                let have = match view.view() {
                    View::List(list) => list.names_in_place().map_err(|source| Error::Corrupt {
                        name: label(&view),
                        source,
                    })?,
                    _ => None,
                };
                out.push(view.clone());
                for (hint, (field, shape)) in names.iter().zip(shapes.iter()).enumerate() {
                    let index = have.as_ref().and_then(|have| {
                        Some(hint)
                            .filter(|&i| have.get(i) == Some(*field))
                            .or_else(|| have.position(field))
                    });
                    let index = index.ok_or_else(|| Error::WrongType {
                        name: label(&view),
                        expected: format!("a list with an element named {field:?}"),
                        found: "none".to_owned(),
                    })?;
                    push(view.get(index)?, shape, out)?;
                }
            }
        }
        Ok(())
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
