//! [`Column`] for the vector types, and the views a reader gets for them.

use std::ops::Deref;

use mori_format::Source;
use mori_format::layout::SexpType;
use mori_format::value::NA_REAL;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Column, FromShared, expect_type};
use crate::{Result, SharedView};

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

    /// Element `index` (`Some(None)` is NA), or `None` past the end.
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
            fn from_shared(view: SharedView) -> Result<Self> {
                expect_type(&view, SexpType::$sexp)?;
                Ok(Self(view))
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

impl Column for Vec<f64> {
    type Prepared<'a> = ();
    type View = DoubleColumn;
    fn prepare(&self) {}
    fn source<'a, 'b>(&'a self, (): &'b ()) -> Source<'b>
    where
        'a: 'b,
    {
        Source::Double(self)
    }
}

impl Column for Vec<i32> {
    type Prepared<'a> = ();
    type View = IntegerColumn;
    fn prepare(&self) {}
    fn source<'a, 'b>(&'a self, (): &'b ()) -> Source<'b>
    where
        'a: 'b,
    {
        Source::Integer(self)
    }
}

impl Column for Vec<bool> {
    type Prepared<'a> = Vec<i32>;
    type View = LogicalColumn;
    fn prepare(&self) -> Vec<i32> {
        self.iter().map(|&b| i32::from(b)).collect()
    }
    fn source<'a, 'b>(&'a self, prepared: &'b Vec<i32>) -> Source<'b>
    where
        'a: 'b,
    {
        Source::Logical(prepared)
    }
}

impl Column for Vec<String> {
    type Prepared<'a> = Vec<&'a str>;
    type View = StringColumn;
    fn prepare(&self) -> Vec<&str> {
        self.iter().map(String::as_str).collect()
    }
    fn source<'a, 'b>(&'a self, prepared: &'b Vec<&'a str>) -> Source<'b>
    where
        'a: 'b,
    {
        Source::Strings(prepared)
    }
}

impl Column for Vec<Option<f64>> {
    type Prepared<'a> = Vec<f64>;
    type View = DoubleColumn;
    fn prepare(&self) -> Vec<f64> {
        self.iter().map(|v| v.unwrap_or(NA_REAL)).collect()
    }
    fn source<'a, 'b>(&'a self, prepared: &'b Vec<f64>) -> Source<'b>
    where
        'a: 'b,
    {
        Source::Double(prepared)
    }
}

impl Column for Vec<Option<i32>> {
    type Prepared<'a> = Vec<i32>;
    type View = IntegerColumn;
    fn prepare(&self) -> Vec<i32> {
        self.iter().map(|v| v.unwrap_or(NA_INT)).collect()
    }
    fn source<'a, 'b>(&'a self, prepared: &'b Vec<i32>) -> Source<'b>
    where
        'a: 'b,
    {
        Source::Integer(prepared)
    }
}

impl Column for Vec<Option<bool>> {
    type Prepared<'a> = Vec<i32>;
    type View = LogicalColumn;
    fn prepare(&self) -> Vec<i32> {
        self.iter().map(|v| v.map_or(NA_INT, i32::from)).collect()
    }
    fn source<'a, 'b>(&'a self, prepared: &'b Vec<i32>) -> Source<'b>
    where
        'a: 'b,
    {
        Source::Logical(prepared)
    }
}

impl Column for Vec<Option<String>> {
    type Prepared<'a> = Vec<Option<&'a str>>;
    type View = StringColumn;
    fn prepare(&self) -> Vec<Option<&str>> {
        self.iter().map(Option::as_deref).collect()
    }
    fn source<'a, 'b>(&'a self, prepared: &'b Vec<Option<&'a str>>) -> Source<'b>
    where
        'a: 'b,
    {
        Source::OptStrings(prepared)
    }
}

/// Slices share as the vectors do (`share_typed(&xs[..])`); only `Vec` fields can be derived.
macro_rules! slice_column {
    ($($t:ty => $via:ty),*) => {$(
        impl Column for [$t] {
            type Prepared<'a> = <$via as Column>::Prepared<'a>;
            type View = <$via as Column>::View;
            fn prepare(&self) -> Self::Prepared<'_> {
                slice_prepare::<$t>(self)
            }
            fn source<'a, 'b>(&'a self, prepared: &'b Self::Prepared<'a>) -> Source<'b>
            where
                'a: 'b,
            {
                slice_source::<$t>(self, prepared)
            }
        }
    )*};
}

/// The conversions of a slice of `T`, as its `Vec<T>` makes them.
trait SliceColumn: Sized {
    type Prepared<'a>
    where
        Self: 'a;
    fn prepare(items: &[Self]) -> Self::Prepared<'_>;
    fn source<'a, 'b>(items: &'a [Self], prepared: &'b Self::Prepared<'a>) -> Source<'b>
    where
        'a: 'b;
}

impl SliceColumn for f64 {
    type Prepared<'a> = ();
    fn prepare(_: &[Self]) {}
    fn source<'a, 'b>(items: &'a [Self], (): &'b ()) -> Source<'b>
    where
        'a: 'b,
    {
        Source::Double(items)
    }
}

impl SliceColumn for i32 {
    type Prepared<'a> = ();
    fn prepare(_: &[Self]) {}
    fn source<'a, 'b>(items: &'a [Self], (): &'b ()) -> Source<'b>
    where
        'a: 'b,
    {
        Source::Integer(items)
    }
}

impl SliceColumn for bool {
    type Prepared<'a> = Vec<i32>;
    fn prepare(items: &[Self]) -> Vec<i32> {
        items.iter().map(|&b| i32::from(b)).collect()
    }
    fn source<'a, 'b>(_: &'a [Self], prepared: &'b Vec<i32>) -> Source<'b>
    where
        'a: 'b,
    {
        Source::Logical(prepared)
    }
}

impl SliceColumn for String {
    type Prepared<'a> = Vec<&'a str>;
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

impl SliceColumn for &str {
    type Prepared<'a>
        = ()
    where
        Self: 'a;
    fn prepare(_: &[Self]) {}
    fn source<'a, 'b>(items: &'a [Self], (): &'b ()) -> Source<'b>
    where
        'a: 'b,
    {
        Source::Strings(items)
    }
}

fn slice_prepare<T: SliceColumn>(items: &[T]) -> T::Prepared<'_> {
    T::prepare(items)
}

fn slice_source<'a, 'b, T: SliceColumn>(items: &'a [T], prepared: &'b T::Prepared<'a>) -> Source<'b>
where
    'a: 'b,
{
    T::source(items, prepared)
}

slice_column!(f64 => Vec<f64>, i32 => Vec<i32>, bool => Vec<bool>, String => Vec<String>);

impl Column for [&str] {
    type Prepared<'a>
        = ()
    where
        Self: 'a;
    type View = StringColumn;
    fn prepare(&self) {}
    fn source<'a, 'b>(&'a self, (): &'b ()) -> Source<'b>
    where
        'a: 'b,
    {
        <&str as SliceColumn>::source(self, &())
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
