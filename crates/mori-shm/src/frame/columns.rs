//! [`Column`] for the vector types, and the views a reader gets for them.

use std::ops::Deref;

use mori_format::Source;
use mori_format::layout::SexpType;
use mori_format::value::NA_REAL;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::__private::{Parts, Shape};
use super::{Column, FromShared};
use crate::SharedView;

/// R's `NA` for integers and logicals.
const NA_INT: i32 = i32::MIN;

/// A double column read in place: dereferences to `&[f64]` (`NA_real_` where R has NA; see
/// [`mori_format::value::is_na_real`]).
///
/// ```
/// use mori_shm::{DoubleColumn, FromShared};
/// let shared = mori_shm::share_typed(&vec![Some(1.0), None])?;
/// let col = DoubleColumn::from_shared(shared.view())?;
/// assert_eq!(col[0], 1.0);
/// assert!(mori_format::value::is_na_real(col[1]));
/// # Ok::<(), mori_shm::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct DoubleColumn(SharedView);

/// An integer column read in place: dereferences to `&[i32]` (`i32::MIN` is R's NA).
///
/// ```
/// use mori_shm::{FromShared, IntegerColumn};
/// let shared = mori_shm::share_typed(&vec![Some(3), None])?;
/// let col = IntegerColumn::from_shared(shared.view())?;
/// assert_eq!(&col[..], &[3, i32::MIN]);
/// # Ok::<(), mori_shm::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct IntegerColumn(SharedView);

/// A logical column read in place (R stores 4 bytes per element: 1, 0, or `i32::MIN` for NA).
///
/// ```
/// use mori_shm::{FromShared, LogicalColumn};
/// let shared = mori_shm::share_typed(&vec![Some(true), None, Some(false)])?;
/// let col = LogicalColumn::from_shared(shared.view())?;
/// assert_eq!(col.iter().collect::<Vec<_>>(), [Some(true), None, Some(false)]);
/// assert_eq!(col.get(0), Some(Some(true)));
/// # Ok::<(), mori_shm::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LogicalColumn(SharedView);

/// A character column read in place: strings borrowed from the mapping.
///
/// ```
/// use mori_shm::{FromShared, StringColumn};
/// let shared = mori_shm::share_typed(&vec![Some("a".to_string()), None])?;
/// let col = StringColumn::from_shared(shared.view())?;
/// assert_eq!(col.iter().collect::<Vec<_>>(), [Some("a"), None]);
/// assert_eq!(col.len(), 2);
/// # Ok::<(), mori_shm::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct StringColumn(SharedView);

impl Deref for DoubleColumn {
    type Target = [f64];
    fn deref(&self) -> &[f64] {
        // The type was checked when the column was made.
        self.0.as_f64().unwrap_or(&[])
    }
}

impl Deref for IntegerColumn {
    type Target = [i32];
    fn deref(&self) -> &[i32] {
        self.0.as_i32().unwrap_or(&[])
    }
}

impl LogicalColumn {
    /// R's storage: 1, 0, or `i32::MIN` for NA.
    pub fn as_raw(&self) -> &[i32] {
        self.0.as_logical().unwrap_or(&[])
    }

    /// ColumnElement `index` (`Some(None)` is NA), or `None` past the end.
    pub fn get(&self, index: usize) -> Option<Option<bool>> {
        self.as_raw().get(index).map(|&v| logical(v))
    }

    /// The elements in order, NA as `None`.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Option<bool>> + '_ {
        self.as_raw().iter().map(|&v| logical(v))
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.as_raw().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn logical(v: i32) -> Option<bool> {
    (v != NA_INT).then_some(v != 0)
}

impl StringColumn {
    /// The strings as R stores them (encoding marks included).
    pub fn strings(&self) -> Option<mori_format::Strings<'_>> {
        self.0.as_strings()
    }

    /// String `index` (`Some(None)` for NA or bytes that are not UTF-8), or `None` past the end.
    pub fn get(&self, index: usize) -> Option<Option<&str>> {
        self.strings()?.get(index).map(|s| s.as_str())
    }

    /// The strings in order, NA (or bytes that are not UTF-8) as `None`.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Option<&str>> + '_ {
        let strings = self.strings();
        let len = strings.as_ref().map_or(0, |s| s.len());
        (0..len).map(move |i| strings.as_ref().and_then(|s| s.get(i)?.as_str()))
    }

    /// Number of strings.
    pub fn len(&self) -> usize {
        self.strings().map_or(0, |s| s.len())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

macro_rules! column_view {
    ($($view:ident => $sexp:ident),*) => {$(
        impl FromShared for $view {
            const SHAPE: &'static Shape = &Shape::Vector(SexpType::$sexp);

            fn from_parts(parts: &mut Parts) -> Self {
                Self(parts.next())
            }

            fn shared_view(&self) -> &SharedView {
                &self.0
            }
        }

        /// Travels as its region's identifier, like a [`SharedView`]; checked again on arrival.
        impl Serialize for $view {
            fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
                self.0.serialize(serializer)
            }
        }

        impl<'de> Deserialize<'de> for $view {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                let view = SharedView::deserialize(deserializer)?;
                Self::from_shared(view).map_err(serde::de::Error::custom)
            }
        }
    )*};
}
column_view!(
    DoubleColumn => Double,
    IntegerColumn => Integer,
    LogicalColumn => Logical,
    StringColumn => Character
);

/// An element type a column holds: how a slice of it is written (the conversions R's layout
/// needs, then the writer's [`Source`]) and what view a reader gets. `Vec<T>` and `[T]` are
/// columns of any such `T`.
pub trait ColumnElement: Sized {
    /// The conversions [`ColumnElement::source`] borrows from (see [`Column::Prepared`]).
    type Prepared<'a>
    where
        Self: 'a;
    /// What a reader gets for a column of it.
    type View: FromShared;
    /// Makes the conversions for `items`.
    fn prepare(items: &[Self]) -> Self::Prepared<'_>;
    /// `items` as the writer's [`Source`].
    fn source<'a, 'b>(items: &'a [Self], prepared: &'b Self::Prepared<'a>) -> Source<'b>
    where
        'a: 'b;
}

impl<T: ColumnElement> Column for [T] {
    type Prepared<'a>
        = T::Prepared<'a>
    where
        T: 'a;
    type View = T::View;
    fn prepare(&self) -> T::Prepared<'_> {
        T::prepare(self)
    }
    fn source<'a, 'b>(&'a self, prepared: &'b T::Prepared<'a>) -> Source<'b>
    where
        'a: 'b,
    {
        T::source(self, prepared)
    }
}

impl<T: ColumnElement> Column for Vec<T> {
    type Prepared<'a>
        = T::Prepared<'a>
    where
        T: 'a;
    type View = T::View;
    fn prepare(&self) -> T::Prepared<'_> {
        T::prepare(self)
    }
    fn source<'a, 'b>(&'a self, prepared: &'b T::Prepared<'a>) -> Source<'b>
    where
        'a: 'b,
    {
        T::source(self, prepared)
    }
}

/// Elements written from their own memory: no conversion.
macro_rules! borrowed_element {
    ($($t:ty => $variant:ident, $view:ty);*) => {$(
        impl ColumnElement for $t {
            type Prepared<'a> = ();
            type View = $view;
            fn prepare(_: &[Self]) {}
            fn source<'a, 'b>(items: &'a [Self], (): &'b ()) -> Source<'b>
            where
                'a: 'b,
            {
                Source::$variant(items)
            }
        }
    )*};
}
borrowed_element!(f64 => Double, DoubleColumn; i32 => Integer, IntegerColumn);

/// Elements converted into a vector of R's storage type first.
macro_rules! converted_element {
    ($($t:ty => $stored:ty, $variant:ident, $view:ty, $convert:expr);*) => {$(
        impl ColumnElement for $t {
            type Prepared<'a> = Vec<$stored>;
            type View = $view;
            fn prepare(items: &[Self]) -> Vec<$stored> {
                items.iter().map($convert).collect()
            }
            fn source<'a, 'b>(_: &'a [Self], prepared: &'b Vec<$stored>) -> Source<'b>
            where
                'a: 'b,
            {
                Source::$variant(prepared)
            }
        }
    )*};
}
converted_element!(
    bool => i32, Logical, LogicalColumn, |&b| i32::from(b);
    Option<bool> => i32, Logical, LogicalColumn, |v: &Option<bool>| v.map_or(NA_INT, i32::from);
    Option<f64> => f64, Double, DoubleColumn, |v: &Option<f64>| v.unwrap_or(NA_REAL);
    Option<i32> => i32, Integer, IntegerColumn, |v: &Option<i32>| v.unwrap_or(NA_INT)
);

impl ColumnElement for String {
    type Prepared<'a> = Vec<&'a str>;
    type View = StringColumn;
    fn prepare(items: &[Self]) -> Vec<&str> {
        items.iter().map(Self::as_str).collect()
    }
    fn source<'a, 'b>(_: &'a [Self], prepared: &'b Vec<&'a str>) -> Source<'b>
    where
        'a: 'b,
    {
        Source::Strings(prepared)
    }
}

impl ColumnElement for Option<String> {
    type Prepared<'a> = Vec<Option<&'a str>>;
    type View = StringColumn;
    fn prepare(items: &[Self]) -> Vec<Option<&str>> {
        items.iter().map(Self::as_deref).collect()
    }
    fn source<'a, 'b>(_: &'a [Self], prepared: &'b Vec<Option<&'a str>>) -> Source<'b>
    where
        'a: 'b,
    {
        Source::OptStrings(prepared)
    }
}

impl ColumnElement for &str {
    type Prepared<'a>
        = ()
    where
        Self: 'a;
    type View = StringColumn;
    fn prepare(_: &[Self]) {}
    fn source<'a, 'b>(items: &'a [Self], (): &'b ()) -> Source<'b>
    where
        'a: 'b,
    {
        Source::Strings(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share_typed;

    #[test]
    fn each_column_type_reads_back_typed_and_checks_its_type() {
        let d = share_typed(&vec![1.0, 2.0]).unwrap();
        let i = share_typed(&vec![Some(1), None]).unwrap();
        let l = share_typed(&vec![true, false]).unwrap();
        let s = share_typed(&vec!["x".to_string()]).unwrap();
        assert_eq!(
            &DoubleColumn::from_shared(d.view()).unwrap()[..],
            &[1.0, 2.0]
        );
        assert_eq!(
            &IntegerColumn::from_shared(i.view()).unwrap()[..],
            &[1, NA_INT]
        );
        let lc = LogicalColumn::from_shared(l.view()).unwrap();
        assert_eq!(lc.iter().collect::<Vec<_>>(), [Some(true), Some(false)]);
        let sc = StringColumn::from_shared(s.view()).unwrap();
        assert_eq!(sc.get(0), Some(Some("x")));
        assert_eq!(sc.get(1), None);
        for wrong in [&i, &l, &s] {
            assert!(matches!(
                DoubleColumn::from_shared(wrong.view()),
                Err(crate::Error::WrongType { .. })
            ));
        }
    }

    #[test]
    fn slices_share_as_their_vectors_do() {
        let words = ["a", "bc"];
        let s = share_typed(&words[..]).unwrap();
        let col = StringColumn::from_shared(s.view()).unwrap();
        assert_eq!(col.iter().collect::<Vec<_>>(), [Some("a"), Some("bc")]);
        let b = share_typed(&[true, false][..]).unwrap();
        assert_eq!(b.as_logical(), Some(&[1, 0][..]));
        let x = share_typed(&[2.0f64][..]).unwrap();
        assert_eq!(x.as_f64(), Some(&[2.0][..]));
        let owned = ["q".to_string()];
        let o = share_typed(&owned[..]).unwrap();
        assert_eq!(o.as_strings().unwrap().len(), 1);
    }

    #[test]
    fn a_column_view_travels_as_its_name_and_is_checked_on_arrival() {
        let d = share_typed(&vec![4.0]).unwrap();
        let col = DoubleColumn::from_shared(d.view()).unwrap();
        let json = serde_json::to_string(&col).unwrap();
        let back: DoubleColumn = serde_json::from_str(&json).unwrap();
        assert_eq!(&back[..], &[4.0]);
        assert!(serde_json::from_str::<StringColumn>(&json).is_err());
    }
}
