//! Apache Arrow interop (feature `arrow`): a [`RecordBatch`] shared as an R data frame, and
//! shared columns read back as Arrow arrays whose numeric buffers point into the mapping.
//!
//! | Arrow                                 | R (in the region)                | back to Arrow                  |
//! |---------------------------------------|----------------------------------|--------------------------------|
//! | `Float64`                             | double, null as `NA_real_`       | `Float64`, no copy             |
//! | `Int32`                               | integer, null as `NA_integer_`   | `Int32`, no copy               |
//! | `Boolean`                             | logical, null as `NA`            | `Boolean`, a copy              |
//! | `Utf8`, `LargeUtf8`, `Utf8View`       | character, null as `NA_character_` | `Utf8`, a copy               |
//! | `Dictionary(_, Utf8)` (any key type)  | factor: integer, `levels`, `class` | `Dictionary(Int32, Utf8)`, a copy |
//!
//! Where copies happen, and why:
//!
//! - Sharing copies every column once, into the region (as every `share_*` function does). A
//!   numeric column without nulls is borrowed straight from the Arrow buffer. R has no
//!   validity bitmap (NA is a value), so a column with nulls is first copied into a vector with
//!   R's NA in the null slots, and that vector is copied into the region. Booleans are bits in
//!   Arrow and 32-bit integers in R, so they are always converted through such a vector.
//!   Strings are borrowed as `&str` slices of the Arrow array (only the slices are collected).
//!   A dictionary of strings becomes a factor: its codes are computed (1-based, NA for nulls),
//!   and its levels are the distinct values (R's levels are unique, Arrow's values need not be).
//! - Reading back, double and integer columns are not copied: the Arrow buffer is the region's
//!   bytes, and it keeps the mapping alive (it holds a clone of the [`SharedView`]), so the
//!   array may outlive every handle. R's NA is a value there, so the validity bitmap is
//!   computed by one scan of the column (none is allocated when the column has no NA). R's
//!   `NaN` is not NA and stays a valid `NaN`. Logical columns are copied into Arrow's bits,
//!   strings into Arrow's offsets-and-bytes layout (R's strings are not laid out that way),
//!   factor codes into 0-based dictionary keys.
//! - An Arrow `Int32` value of `i32::MIN` is R's `NA_integer_`: it reads back as null, in R
//!   and here. R's integers cannot hold it.
//!
//! Attributes other than a factor's (a `Date` or `POSIXct` class, say) are not carried: such a
//! column converts as its plain vector type. Every field of a batch read back is nullable.
//!
//! ```
//! use std::sync::Arc;
//! use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray};
//! use arrow_array::cast::AsArray;
//! use arrow_array::types::Float64Type;
//!
//! let batch = RecordBatch::try_from_iter([
//!     ("x", Arc::new(Float64Array::from(vec![Some(1.5), None, Some(3.0)])) as ArrayRef),
//!     ("label", Arc::new(StringArray::from(vec![Some("a"), Some("b"), None])) as ArrayRef),
//! ]).unwrap();
//! let shared = mori_shm::share_record_batch(&batch)?; // an R data.frame, by name
//!
//! // Another process attaches by name and gets the batch back.
//! let frame = mori_shm::map_shared(shared.name())?;
//! let back = mori_shm::to_record_batch(&frame)?;
//! assert_eq!(back.column(0).as_ref(), batch.column(0).as_ref());
//! assert_eq!(back.column(1).as_ref(), batch.column(1).as_ref());
//!
//! // The doubles are the region's bytes, not a copy of them.
//! let x = back.column(0).as_primitive::<Float64Type>();
//! assert_eq!(x.values().as_ptr(), frame.get(0)?.as_f64().unwrap().as_ptr());
//! # Ok::<(), mori_shm::Error>(())
//! ```
//!
//! Polars is not supported here: it is built on Arrow but brings its own large dependency tree
//! (its own Arrow implementation among it), far heavier than this crate. A polars user converts
//! through Arrow record batches.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::GenericStringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type};
use arrow_array::{
    AnyDictionaryArray, Array, ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int32Array,
    OffsetSizeTrait, RecordBatch, RecordBatchOptions, StringArray,
};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, ScalarBuffer, ToByteSlice};
use arrow_schema::{DataType, Field, Schema};
use mori_format::value::{
    Attributes, Data, Encoding, NA_INTEGER, NA_REAL, RString, Value, is_na_real,
};
use mori_format::{Source, Str, View};

use crate::error::{Error, Result};
use crate::shared::{Shared, SharedView, share_source};

/// One column of a batch, ready to be described by a [`Source`]: borrowed from the Arrow array
/// where R's layout is Arrow's, else an R-shaped copy.
enum Column<'a> {
    Double(Cow<'a, [f64]>),
    Integer(Cow<'a, [i32]>),
    Logical(Vec<i32>),
    Strings(Vec<&'a str>),
    OptStrings(Vec<Option<&'a str>>),
    /// 1-based codes (NA as `NA_INTEGER`), with `levels` and `class = "factor"`.
    Factor(Vec<i32>, Attributes),
}

impl Column<'_> {
    fn source(&self) -> Source<'_> {
        match self {
            Self::Double(x) => Source::Double(x),
            Self::Integer(x) => Source::Integer(x),
            Self::Logical(x) => Source::Logical(x),
            Self::Strings(x) => Source::Strings(x),
            Self::OptStrings(x) => Source::OptStrings(x),
            Self::Factor(codes, attrs) => {
                Source::Attributed(Box::new(Source::Integer(codes)), attrs)
            }
        }
    }
}

/// The nulls of `array`, if it has any (a bitmap of all valid slots counts as none).
fn nulls_of(array: &dyn Array) -> Option<&NullBuffer> {
    array.nulls().filter(|n| n.null_count() > 0)
}

/// `values`, borrowed when there are no nulls, else copied with `na` in the null slots.
fn with_na<'a, T: Copy>(values: &'a [T], nulls: Option<&NullBuffer>, na: T) -> Cow<'a, [T]> {
    match nulls {
        None => Cow::Borrowed(values),
        Some(nulls) => Cow::Owned(
            values
                .iter()
                .zip(nulls.iter())
                .map(|(&v, valid)| if valid { v } else { na })
                .collect(),
        ),
    }
}

/// The strings of a string array of any layout, as R's character vector.
fn strings<'a, I>(len: usize, nulls: Option<&NullBuffer>, iter: I) -> Column<'a>
where
    I: Iterator<Item = Option<&'a str>>,
{
    if nulls.is_some() {
        Column::OptStrings(iter.collect())
    } else {
        let mut v = Vec::with_capacity(len);
        v.extend(iter.map(Option::unwrap_or_default));
        Column::Strings(v)
    }
}

/// The strings of a string array of any layout, nulls as `None`; `None` for other arrays.
fn optional_strings(array: &dyn Array) -> Option<Vec<Option<&str>>> {
    Some(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().iter().collect(),
        DataType::LargeUtf8 => array.as_string::<i64>().iter().collect(),
        DataType::Utf8View => array.as_string_view().iter().collect(),
        _ => return None,
    })
}

/// A dictionary of strings as an R factor: the distinct non-null values, in order of first
/// appearance in the dictionary, are the levels (R's levels are unique; Arrow's values need not
/// be), and a null key or a key to a null value is NA.
fn factor_of(dict: &dyn AnyDictionaryArray) -> Option<Column<'static>> {
    let values = optional_strings(dict.values().as_ref())?;
    let mut levels: Vec<&str> = Vec::new();
    let mut seen = HashMap::new();
    // The 1-based code of each dictionary value.
    let code: Vec<i32> = values
        .iter()
        .map(|v| match v {
            None => NA_INTEGER,
            Some(v) => *seen.entry(*v).or_insert_with(|| {
                levels.push(v);
                // R's factors hold at most i32::MAX levels; values past that read as NA.
                i32::try_from(levels.len()).unwrap_or(NA_INTEGER)
            }),
        })
        .collect();
    let codes = if values.is_empty() {
        vec![NA_INTEGER; dict.len()]
    } else {
        let keys = dict.normalized_keys();
        let nulls = dict.nulls();
        (0..dict.len())
            .map(|i| match nulls {
                Some(n) if n.is_null(i) => NA_INTEGER,
                _ => code[keys[i]],
            })
            .collect()
    };
    let mut attrs = Attributes::new();
    attrs.set("levels", Value::character(levels));
    attrs.set("class", Value::character(["factor"]));
    Some(Column::Factor(codes, attrs))
}

/// Describe column `array` (named `name`) in R's terms, or say why it cannot be.
fn column<'a>(name: &str, array: &'a ArrayRef) -> Result<Column<'a>> {
    let nulls = nulls_of(array.as_ref());
    Ok(match array.data_type() {
        DataType::Float64 => Column::Double(with_na(
            array.as_primitive::<Float64Type>().values(),
            nulls,
            NA_REAL,
        )),
        DataType::Int32 => Column::Integer(with_na(
            array.as_primitive::<Int32Type>().values(),
            nulls,
            NA_INTEGER,
        )),
        DataType::Boolean => Column::Logical(
            array
                .as_boolean()
                .iter()
                .map(|b| b.map_or(NA_INTEGER, i32::from))
                .collect(),
        ),
        DataType::Utf8 => strings(array.len(), nulls, array.as_string::<i32>().iter()),
        DataType::LargeUtf8 => strings(array.len(), nulls, array.as_string::<i64>().iter()),
        DataType::Utf8View => strings(array.len(), nulls, array.as_string_view().iter()),
        DataType::Dictionary(..) => match array.as_any_dictionary_opt().and_then(factor_of) {
            Some(f) => f,
            None => {
                return Err(Error::UnsupportedArrowType {
                    column: name.to_owned(),
                    data_type: array.data_type().to_string(),
                });
            }
        },
        other => {
            return Err(Error::UnsupportedArrowType {
                column: name.to_owned(),
                data_type: other.to_string(),
            });
        }
    })
}

/// Share an Arrow record batch as one R data frame: the field names are the column names,
/// `Float64` columns become doubles, `Int32` integers, `Boolean` logicals, `Utf8`,
/// `LargeUtf8` and `Utf8View` character vectors and dictionaries of strings factors, with every
/// null as R's NA of the type.
///
/// The region is written in one pass, borrowing the Arrow buffers where R's layout is Arrow's
/// (numeric columns without nulls, and the strings' bytes); columns with nulls and booleans
/// are converted into a temporary R-shaped copy first (see the [module docs](self)). The
/// region is byte for byte what [`share_data_frame`](crate::share_data_frame) writes from the
/// same columns, so R's `mori::map_shared()` reads it as a `data.frame`.
///
/// A column of any other type is refused with [`Error::UnsupportedArrowType`] naming it, before
/// a region exists.
///
/// ```
/// use std::sync::Arc;
/// use arrow_array::{ArrayRef, BooleanArray, Int32Array, RecordBatch, Date32Array};
/// use mori_shm::Error;
///
/// let batch = RecordBatch::try_from_iter([
///     ("n", Arc::new(Int32Array::from(vec![Some(1), None])) as ArrayRef),
///     ("ok", Arc::new(BooleanArray::from(vec![Some(true), None])) as ArrayRef),
/// ]).unwrap();
/// let shared = mori_shm::share_record_batch(&batch)?;
/// assert_eq!(shared.get_named("n")?.unwrap().as_i32(), Some(&[1, i32::MIN][..]));
/// assert_eq!(shared.get_named("ok")?.unwrap().as_logical(), Some(&[1, i32::MIN][..]));
///
/// let dates = RecordBatch::try_from_iter([
///     ("day", Arc::new(Date32Array::from(vec![19000])) as ArrayRef),
/// ]).unwrap();
/// let err = mori_shm::share_record_batch(&dates).unwrap_err();
/// assert!(matches!(err, Error::UnsupportedArrowType { ref column, .. } if column == "day"));
/// # Ok::<(), mori_shm::Error>(())
/// ```
pub fn share_record_batch(batch: &RecordBatch) -> Result<Shared> {
    let schema = batch.schema_ref();
    let columns = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, array)| column(field.name(), array))
        .collect::<Result<Vec<_>>>()?;
    let frame = schema
        .fields()
        .iter()
        .zip(&columns)
        .map(|(field, col)| (field.name().as_str(), col.source()))
        .collect();
    share_source(&Source::DataFrame(frame))
}

/// The owner of a zero-copy Arrow buffer: a view of a double or integer vector, whose bytes
/// are the buffer's. The view keeps the mapping alive, and the mapping never moves.
struct MappedVector(SharedView);

impl AsRef<[u8]> for MappedVector {
    fn as_ref(&self) -> &[u8] {
        match self.0.view() {
            View::Double(v) => v.data().to_byte_slice(),
            View::Integer(v) => v.data().to_byte_slice(),
            _ => &[],
        }
    }
}

/// The vector of `view` as an Arrow buffer of its bytes in the mapping (no copy).
fn mapped_buffer<T: arrow_buffer::ArrowNativeType>(
    view: &SharedView,
    len: usize,
) -> ScalarBuffer<T> {
    let bytes = bytes::Bytes::from_owner(MappedVector(view.clone()));
    ScalarBuffer::new(Buffer::from(bytes), 0, len)
}

/// A validity bitmap with `valid(i)` for each of `len` slots, or none if all are valid.
fn validity(len: usize, any_na: bool, valid: impl FnMut(usize) -> bool) -> Option<NullBuffer> {
    any_na.then(|| NullBuffer::new(BooleanBuffer::collect_bool(len, valid)))
}

/// The bytes of a string as UTF-8, decoded from its R encoding.
fn decode(encoding: Encoding, bytes: &[u8]) -> Option<Cow<'_, str>> {
    match encoding {
        Encoding::Latin1 => Some(Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect())),
        Encoding::Native | Encoding::Utf8 => std::str::from_utf8(bytes).ok().map(Cow::Borrowed),
        Encoding::Bytes => None,
    }
}

/// A character vector copied into an Arrow string array with offsets of type `O`.
fn string_array<'a, O: OffsetSizeTrait>(
    strings: impl ExactSizeIterator<Item = Str<'a>>,
    bytes: usize,
    label: &dyn Fn() -> String,
) -> Result<ArrayRef> {
    let mut builder = GenericStringBuilder::<O>::with_capacity(strings.len(), bytes);
    for (i, s) in strings.enumerate() {
        match s.bytes {
            None => builder.append_null(),
            Some(b) => builder.append_value(decode(s.encoding, b).ok_or_else(|| {
                Error::NotArrowConvertible {
                    name: label(),
                    what: format!(
                        "string {} (0-based) is not valid text in its encoding ({:?})",
                        i, s.encoding
                    ),
                }
            })?),
        }
    }
    Ok(Arc::new(builder.finish()))
}

/// The factor codes `codes` (1-based, NA as `NA_INTEGER`) with `levels`, as an Arrow dictionary.
fn factor(codes: &[i32], levels: &[RString], label: &dyn Fn() -> String) -> Result<ArrayRef> {
    let bad = |what: String| Error::NotArrowConvertible {
        name: label(),
        what,
    };
    let values: StringArray = levels
        .iter()
        .enumerate()
        .map(|(i, l)| match &l.bytes {
            None => Ok(None),
            Some(b) => decode(l.encoding, b).map(Some).ok_or_else(|| {
                bad(format!(
                    "factor level {i} (0-based) is not valid text in its encoding ({:?})",
                    l.encoding
                ))
            }),
        })
        .collect::<Result<_>>()?;
    let n = levels.len();
    let mut keys = Vec::with_capacity(codes.len());
    for &c in codes {
        keys.push(match c {
            NA_INTEGER => None,
            c if c >= 1 && (c as usize) <= n => Some(c - 1),
            c => return Err(bad(format!("factor code {c} is outside its {n} levels"))),
        });
    }
    let dict = DictionaryArray::<Int32Type>::try_new(Int32Array::from(keys), Arc::new(values))
        .map_err(|e| bad(e.to_string()))?;
    Ok(Arc::new(dict))
}

/// The `levels` of an integer vector whose `class` includes `"factor"`, if it is one.
fn factor_levels(attrs: &Attributes) -> Option<&[RString]> {
    let is_factor = matches!(
        attrs.get("class"),
        Some(Value { data: Data::Character(c), .. }) if c.iter().any(|s| s.as_str() == Some("factor"))
    );
    match attrs.get("levels") {
        Some(Value {
            data: Data::Character(levels),
            ..
        }) if is_factor => Some(levels),
        _ => None,
    }
}

/// Convert a shared vector to an Arrow array: a double vector to `Float64` and an integer
/// vector to `Int32` without copying (the array's buffer is the region's bytes and keeps the
/// mapping alive), a logical vector to `Boolean`, a character vector to `Utf8` (`LargeUtf8`
/// past 2 GiB of text) and a factor to `Dictionary(Int32, Utf8)`, these three copied. R's NA
/// becomes null; `NaN` stays a valid `NaN`. See the [module docs](self) for why the copies.
///
/// A list, raw or complex vector, or a string that is not valid text in its R encoding, is
/// refused with [`Error::NotArrowConvertible`] (Latin-1 strings are converted to UTF-8).
///
/// ```
/// use arrow_array::Array;
/// use arrow_array::cast::AsArray;
/// use arrow_array::types::Int32Type;
///
/// let shared = mori_shm::share_i32(&[4, i32::MIN, 6])?;
/// let array = mori_shm::column_to_arrow(&shared)?;
/// drop(shared); // the array keeps the mapping
/// let ints = array.as_primitive::<Int32Type>();
/// assert_eq!((ints.value(0), ints.is_null(1), ints.value(2)), (4, true, 6));
/// # Ok::<(), mori_shm::Error>(())
/// ```
pub fn column_to_arrow(column: &SharedView) -> Result<ArrayRef> {
    let label = || {
        column
            .identifier()
            .unwrap_or_else(|| column.name().to_owned())
    };
    let corrupt = |source| Error::Corrupt {
        name: label(),
        source,
    };
    Ok(match column.view() {
        View::Double(v) => {
            let data = v.data();
            let nulls = validity(data.len(), data.iter().any(|&x| is_na_real(x)), |i| {
                !is_na_real(data[i])
            });
            Arc::new(Float64Array::new(mapped_buffer(column, data.len()), nulls))
        }
        View::Integer(v) => {
            let data = v.data();
            if !v.attributes_blob().is_empty() {
                let attrs = v.attributes().map_err(corrupt)?;
                if let Some(levels) = factor_levels(&attrs) {
                    return factor(data, levels, &label);
                }
            }
            let nulls = validity(data.len(), data.contains(&NA_INTEGER), |i| {
                data[i] != NA_INTEGER
            });
            Arc::new(Int32Array::new(mapped_buffer(column, data.len()), nulls))
        }
        View::Logical(v) => {
            let data = v.data();
            let values =
                BooleanBuffer::collect_bool(data.len(), |i| data[i] != 0 && data[i] != NA_INTEGER);
            let nulls = validity(data.len(), data.contains(&NA_INTEGER), |i| {
                data[i] != NA_INTEGER
            });
            Arc::new(BooleanArray::new(values, nulls))
        }
        View::Character(s) => {
            let bytes: usize = s.iter().map(|s| s.bytes.map_or(0, <[u8]>::len)).sum();
            if bytes <= i32::MAX as usize {
                string_array::<i32>(s.iter(), bytes, &label)?
            } else {
                string_array::<i64>(s.iter(), bytes, &label)?
            }
        }
        other => {
            return Err(Error::NotArrowConvertible {
                name: label(),
                what: format!(
                    "R type {} has no Arrow array here",
                    other.sexptype().r_name()
                ),
            });
        }
    })
}

/// The number of rows of a data frame with no columns, from its `row.names` (compact
/// `c(NA, -n)` or expanded).
fn rows_of_empty_frame(frame: &SharedView) -> Result<usize> {
    let View::List(list) = frame.view() else {
        return Ok(0);
    };
    let attrs = list.attributes().map_err(|source| Error::Corrupt {
        name: frame
            .identifier()
            .unwrap_or_else(|| frame.name().to_owned()),
        source,
    })?;
    Ok(match attrs.get("row.names").map(|v| &v.data) {
        Some(Data::Integer(r)) if r.len() == 2 && r[0] == NA_INTEGER => {
            r[1].unsigned_abs() as usize
        }
        Some(Data::Integer(r)) => r.len(),
        Some(Data::Character(r)) => r.len(),
        _ => 0,
    })
}

/// Convert a shared data frame (or any list of equal-length vectors) to an Arrow record batch:
/// each column as [`column_to_arrow`] converts it (doubles and integers without a copy), the
/// list's names as field names (`""` where there is none), every field nullable.
///
/// Something other than a list is [`Error::NotAList`]; a column that does not convert, or
/// columns of unequal length, [`Error::NotArrowConvertible`].
///
/// ```
/// use mori_shm::Source;
/// let shared = mori_shm::share_data_frame(vec![
///     ("x", Source::Double(&[1.0, 2.0])),
///     ("s", Source::OptStrings(&[Some("a"), None])),
/// ])?;
/// let batch = mori_shm::to_record_batch(&shared)?;
/// assert_eq!(batch.num_rows(), 2);
/// assert_eq!(batch.schema().field(1).name(), "s");
/// assert_eq!(batch.column(1).null_count(), 1);
/// # Ok::<(), mori_shm::Error>(())
/// ```
pub fn to_record_batch(frame: &SharedView) -> Result<RecordBatch> {
    let names = frame.names()?;
    let mut fields = Vec::with_capacity(frame.len());
    let mut arrays = Vec::with_capacity(frame.len());
    for i in 0..frame.len() {
        let array = column_to_arrow(&frame.get(i)?)?;
        let name = names
            .as_ref()
            .and_then(|n| n.get(i))
            .and_then(|n| n.as_str())
            .unwrap_or_default();
        fields.push(Field::new(name, array.data_type().clone(), true));
        arrays.push(array);
    }
    let rows = match arrays.first() {
        Some(a) => a.len(),
        None => rows_of_empty_frame(frame)?,
    };
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options).map_err(
        |e| Error::NotArrowConvertible {
            name: frame
                .identifier()
                .unwrap_or_else(|| frame.name().to_owned()),
            what: e.to_string(),
        },
    )
}
