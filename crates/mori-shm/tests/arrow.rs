//! Apache Arrow interop (feature `arrow`): batches shared as R data frames, byte for byte what
//! `share_data_frame` writes, read back with numeric buffers in the mapping; R's own data frame
//! converted.

mod common;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int8Type, Int32Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Date32Array, DictionaryArray, Float64Array, Int8Array,
    Int32Array, Int64Array, LargeStringArray, RecordBatch, StringArray, StringViewArray,
};
use arrow_schema::DataType;
use mori_format::value::{Encoding, NA_INTEGER, NA_REAL, RString, Value, is_na_real};
use mori_shm::{Error, Source, map_shared};
use proptest::prelude::*;

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).unwrap()
}

/// The strings of any Arrow string array, nulls as `None`.
fn strings_of(array: &dyn Array) -> Vec<Option<String>> {
    let own = |s: Option<&str>| s.map(str::to_owned);
    match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().iter().map(own).collect(),
        DataType::LargeUtf8 => array.as_string::<i64>().iter().map(own).collect(),
        DataType::Utf8View => array.as_string_view().iter().map(own).collect(),
        other => panic!("not a string array: {other}"),
    }
}

/// A batch with nulls in every supported type, non-ASCII text and an empty string.
fn batch_with_nulls() -> RecordBatch {
    batch(vec![
        (
            "x",
            Arc::new(Float64Array::from(vec![
                Some(1.5),
                None,
                Some(-0.0),
                Some(1e300),
            ])),
        ),
        (
            "n",
            Arc::new(Int32Array::from(vec![Some(7), Some(-3), None, Some(0)])),
        ),
        (
            "ok",
            Arc::new(BooleanArray::from(vec![
                Some(true),
                None,
                Some(false),
                Some(true),
            ])),
        ),
        (
            "s",
            Arc::new(StringArray::from(vec![
                Some("a"),
                Some("h\u{e9}"),
                None,
                Some(""),
            ])),
        ),
        (
            "big",
            Arc::new(LargeStringArray::from(vec![
                None,
                Some("b"),
                Some("c"),
                None,
            ])),
        ),
        (
            "view",
            Arc::new(StringViewArray::from(vec![
                Some("a string longer than twelve bytes"),
                None,
                Some("z"),
                Some("y"),
            ])),
        ),
    ])
}

#[test]
fn a_batch_with_nulls_of_every_type_round_trips() {
    let original = batch_with_nulls();
    let shared = mori_shm::share_record_batch(&original).unwrap();
    let back = mori_shm::to_record_batch(&map_shared(shared.name()).unwrap()).unwrap();

    assert_eq!(back.num_rows(), 4);
    let names: Vec<&str> = back
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["x", "n", "ok", "s", "big", "view"]);
    for i in 0..3 {
        assert_eq!(
            back.column(i).as_ref(),
            original.column(i).as_ref(),
            "column {i}"
        );
    }
    // -0.0 keeps its sign bit.
    let x = back.column(0).as_primitive::<Float64Type>();
    assert_eq!(x.value(2).to_bits(), (-0.0f64).to_bits());
    for i in 3..6 {
        assert_eq!(back.column(i).data_type(), &DataType::Utf8, "column {i}");
        assert_eq!(
            strings_of(back.column(i)),
            strings_of(original.column(i)),
            "column {i}"
        );
    }
    assert!(back.schema_ref().fields().iter().all(|f| f.is_nullable()));
}

#[test]
fn nulls_are_rs_na_of_each_type_in_the_region() {
    let shared = mori_shm::share_record_batch(&batch_with_nulls()).unwrap();
    let value = shared.to_value().unwrap();
    let column = |name: &str| shared.get_named(name).unwrap().unwrap();
    let x = column("x");
    assert!(is_na_real(x.as_f64().unwrap()[1]));
    assert_eq!(x.as_f64().unwrap()[1].to_bits(), NA_REAL.to_bits());
    assert_eq!(column("n").as_i32(), Some(&[7, -3, NA_INTEGER, 0][..]));
    assert_eq!(column("ok").as_logical(), Some(&[1, NA_INTEGER, 0, 1][..]));
    let s = column("s");
    let s = s.as_strings().unwrap();
    assert!(s.get(2).unwrap().is_na());
    assert_eq!(s.get(3).unwrap().as_str(), Some(""));
    // A data frame, as R sees it.
    let class = value.attrs.get("class").unwrap();
    assert_eq!(class, &Value::character(["data.frame"]));
}

#[test]
fn a_sliced_batch_shares_only_its_rows() {
    let original = batch_with_nulls().slice(1, 2);
    let shared = mori_shm::share_record_batch(&original).unwrap();
    let n = shared.get_named("n").unwrap().unwrap();
    assert_eq!(n.as_i32(), Some(&[-3, NA_INTEGER][..]));
    let back = mori_shm::to_record_batch(&shared).unwrap();
    assert_eq!(back.num_rows(), 2);
    assert_eq!(
        strings_of(back.column(3)),
        [Some("h\u{e9}".to_owned()), None]
    );
    assert_eq!(back.column(2).as_ref(), original.column(2).as_ref());
}

#[test]
fn an_unsupported_column_is_a_typed_error_naming_it() {
    for (array, type_name) in [
        (Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef, "Int64"),
        (
            Arc::new(Date32Array::from(vec![1, 2])) as ArrayRef,
            "Date32",
        ),
        (
            Arc::new(
                DictionaryArray::<Int32Type>::try_new(
                    Int32Array::from(vec![0, 0]),
                    Arc::new(Int64Array::from(vec![5])),
                )
                .unwrap(),
            ) as ArrayRef,
            "Dictionary(Int32, Int64)",
        ),
    ] {
        let b = batch(vec![
            ("fine", Arc::new(Float64Array::from(vec![1.0, 2.0]))),
            ("when", array),
        ]);
        let err = mori_shm::share_record_batch(&b).unwrap_err();
        match &err {
            Error::UnsupportedArrowType { column, data_type } => {
                assert_eq!(column, "when");
                assert_eq!(data_type, type_name);
            }
            other => panic!("unexpected error {other:?}"),
        }
        assert!(err.to_string().contains("'when'"), "{err}");
    }
}

/// The address range of this process's mapping of the region file `name`, if it has one.
fn mapping_of(name: &str) -> Option<std::ops::Range<usize>> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let file = format!("/dev/shm{name}");
    maps.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        let range = parts.next()?;
        let path = parts.nth(4)?;
        (path == file).then(|| {
            let (start, end) = range.split_once('-').unwrap();
            usize::from_str_radix(start, 16).unwrap()..usize::from_str_radix(end, 16).unwrap()
        })
    })
}

#[test]
fn numeric_columns_are_views_of_the_mapping_that_keep_it_alive() {
    let x: Vec<f64> = (0..10_000).map(|i| f64::from(i) * 0.5).collect();
    let mut n: Vec<i32> = (0..10_000).collect();
    n[17] = NA_INTEGER;
    let shared =
        mori_shm::share_data_frame(vec![("x", Source::Double(&x)), ("n", Source::Integer(&n))])
            .unwrap();
    let name = shared.name().to_owned();
    let frame = map_shared(&name).unwrap();
    let mapped = mapping_of(&name).expect("the region is mapped");
    let batch = mori_shm::to_record_batch(&frame).unwrap();

    let xs = batch.column(0).as_primitive::<Float64Type>().clone();
    let ns = batch.column(1).as_primitive::<Int32Type>().clone();
    for (ptr, bytes) in [
        (xs.values().as_ptr() as usize, x.len() * 8),
        (ns.values().as_ptr() as usize, n.len() * 4),
    ] {
        assert!(
            mapped.contains(&ptr) && mapped.contains(&(ptr + bytes - 1)),
            "buffer {ptr:#x}+{bytes} is outside the mapping {mapped:x?}"
        );
    }
    assert_eq!(
        xs.values().as_ptr(),
        frame.get(0).unwrap().as_f64().unwrap().as_ptr()
    );
    assert_eq!(ns.null_count(), 1);
    assert!(ns.is_null(17));

    // Every handle gone, name unlinked: the arrays still hold the mapping and read it.
    drop((shared, frame, batch));
    assert!(matches!(map_shared(&name), Err(Error::NotFound { .. })));
    assert!(mapping_of(&name).is_some(), "the arrays keep the mapping");
    assert_eq!(xs.value(9_999), 4_999.5);
    assert_eq!(ns.value(9_999), 9_999);
    drop((xs, ns));
    assert!(mapping_of(&name).is_none(), "the last array unmaps it");
}

#[test]
fn rs_nan_stays_a_value_and_only_na_is_null() {
    let shared = mori_shm::share_f64(&[f64::NAN, NA_REAL, 2.0]).unwrap();
    let array = mori_shm::column_to_arrow(&shared).unwrap();
    let x = array.as_primitive::<Float64Type>();
    assert!(x.is_valid(0) && x.value(0).is_nan());
    assert!(x.is_null(1));
    assert_eq!(x.value(2), 2.0);
    // No bitmap at all without NA.
    let plain = mori_shm::column_to_arrow(&mori_shm::share_f64(&[f64::NAN]).unwrap()).unwrap();
    assert!(plain.nulls().is_none());
}

/// The bytes of region `name`'s file.
fn file_bytes(name: &str) -> Vec<u8> {
    std::fs::read(common::region_file(name)).unwrap()
}

#[test]
fn a_shared_batch_is_byte_identical_to_the_same_frame_from_sources() {
    let from_arrow = mori_shm::share_record_batch(&batch_with_nulls()).unwrap();
    let from_sources = mori_shm::share_data_frame(vec![
        ("x", Source::Double(&[1.5, NA_REAL, -0.0, 1e300])),
        ("n", Source::Integer(&[7, -3, NA_INTEGER, 0])),
        ("ok", Source::Logical(&[1, NA_INTEGER, 0, 1])),
        (
            "s",
            Source::OptStrings(&[Some("a"), Some("h\u{e9}"), None, Some("")]),
        ),
        (
            "big",
            Source::OptStrings(&[None, Some("b"), Some("c"), None]),
        ),
        (
            "view",
            Source::OptStrings(&[
                Some("a string longer than twelve bytes"),
                None,
                Some("z"),
                Some("y"),
            ]),
        ),
    ])
    .unwrap();
    let a = file_bytes(from_arrow.name());
    let b = file_bytes(from_sources.name());
    assert_eq!(a.len(), b.len());
    assert!(a == b, "the regions differ");
}

#[test]
fn rs_data_frame_fixture_converts_to_its_deparse_and_back_to_rs_bytes() {
    // data.frame(a = c(1.5, 2.5, NA), b = c("x", NA, "z"), f = factor(c("u", "v", "u")),
    //            l = c(TRUE, NA, FALSE)), written by R's mori 0.2.0 (see the fixture's deparse).
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../mori-format/tests/fixtures/r-mori-0.2.0/data_frame.bin"
    );
    let bytes = std::fs::read(fixture).unwrap();
    let (name, _guard) = raw_region(&bytes);

    let frame = map_shared(&name).unwrap();
    let batch = mori_shm::to_record_batch(&frame).unwrap();
    // Shared again from Arrow, it is the region R wrote, byte for byte.
    let again = mori_shm::share_record_batch(&batch).unwrap();
    assert!(
        file_bytes(again.name()) == bytes,
        "the region differs from R's"
    );
    assert_eq!(batch.num_rows(), 3);
    let names: Vec<&str> = batch
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["a", "b", "f", "l"]);
    assert_eq!(
        batch.column(0).as_ref(),
        &Float64Array::from(vec![Some(1.5), Some(2.5), None]) as &dyn Array
    );
    assert_eq!(
        strings_of(batch.column(1)),
        [Some("x".to_owned()), None, Some("z".to_owned())]
    );
    let f = batch.column(2).as_dictionary::<Int32Type>();
    assert_eq!(f.keys(), &Int32Array::from(vec![0, 1, 0]));
    assert_eq!(
        strings_of(f.values()),
        [Some("u".to_owned()), Some("v".to_owned())]
    );
    assert_eq!(
        batch.column(3).as_ref(),
        &BooleanArray::from(vec![Some(true), None, Some(false)]) as &dyn Array
    );
    // R's doubles are read in place too.
    let a = batch.column(0).as_primitive::<Float64Type>();
    assert_eq!(
        a.values().as_ptr(),
        frame.get(0).unwrap().as_f64().unwrap().as_ptr()
    );
}

#[test]
fn a_dictionary_of_strings_shares_as_a_factor() {
    // Keys of another width, a duplicate value, a null value and a null key.
    let keys = Int8Array::from(vec![Some(2), Some(0), None, Some(1), Some(3), Some(0)]);
    let values = StringArray::from(vec![Some("lo"), Some("hi"), Some("lo"), None]);
    let dict = DictionaryArray::<Int8Type>::try_new(keys, Arc::new(values)).unwrap();
    let b = batch(vec![("f", Arc::new(dict) as ArrayRef)]);
    let shared = mori_shm::share_record_batch(&b).unwrap();

    let mut factor = Value::integer([1, 1, NA_INTEGER, 2, NA_INTEGER, 1]);
    factor.attrs.set("levels", Value::character(["lo", "hi"]));
    factor.attrs.set("class", Value::character(["factor"]));
    let f = shared.get(0).unwrap();
    assert_eq!(f.to_value().unwrap(), factor);
    let equivalent = mori_shm::share(&Value::data_frame([("f", factor)], 6)).unwrap();
    assert!(file_bytes(shared.name()) == file_bytes(equivalent.name()));

    let back = mori_shm::column_to_arrow(&f).unwrap();
    let back = back.as_dictionary::<Int32Type>();
    assert_eq!(
        back.keys(),
        &Int32Array::from(vec![Some(0), Some(0), None, Some(1), None, Some(0)])
    );
    assert_eq!(
        strings_of(back.values()),
        [Some("lo".to_owned()), Some("hi".to_owned())]
    );
}

#[test]
fn factors_latin1_and_empty_frames_convert() {
    let mut factor = Value::integer([2, NA_INTEGER, 1]);
    factor.attrs.set("levels", Value::character(["lo", "hi"]));
    factor.attrs.set("class", Value::character(["factor"]));
    let latin1 = Value::new(mori_format::value::Data::Character(vec![RString {
        bytes: Some(b"caf\xe9".to_vec()),
        encoding: Encoding::Latin1,
    }]));
    let shared = mori_shm::share(&Value::named_list([("f", factor), ("s", latin1)])).unwrap();
    let f = mori_shm::column_to_arrow(&shared.get(0).unwrap()).unwrap();
    let f = f.as_dictionary::<Int32Type>();
    assert_eq!(f.keys(), &Int32Array::from(vec![Some(1), None, Some(0)]));
    assert_eq!(
        strings_of(f.values()),
        [Some("lo".to_owned()), Some("hi".to_owned())]
    );
    let s = mori_shm::column_to_arrow(&shared.get(1).unwrap()).unwrap();
    assert_eq!(strings_of(&s), [Some("caf\u{e9}".to_owned())]);
    // A Latin-1 factor level too.
    let mut latin1_factor = Value::integer([1]);
    latin1_factor.attrs.set(
        "levels",
        Value::new(mori_format::value::Data::Character(vec![RString {
            bytes: Some(b"\xe9t\xe9".to_vec()),
            encoding: Encoding::Latin1,
        }])),
    );
    latin1_factor
        .attrs
        .set("class", Value::character(["factor"]));
    let f = mori_shm::column_to_arrow(&mori_shm::share(&latin1_factor).unwrap()).unwrap();
    let f = f.as_dictionary::<Int32Type>();
    assert_eq!(strings_of(f.values()), [Some("\u{e9}t\u{e9}".to_owned())]);

    // No columns: the row count comes from the data frame's row.names.
    let empty = Value::data_frame(Vec::<(&str, Value)>::new(), 5);
    let shared = mori_shm::share(&empty).unwrap();
    let batch = mori_shm::to_record_batch(&shared).unwrap();
    assert_eq!((batch.num_columns(), batch.num_rows()), (0, 5));

    // No rows: every type still converts, both ways.
    let none = batch_with_nulls().slice(0, 0);
    let shared = mori_shm::share_record_batch(&none).unwrap();
    let back = mori_shm::to_record_batch(&shared).unwrap();
    assert_eq!((back.num_columns(), back.num_rows()), (6, 0));
    assert_eq!(back.column(0).as_ref(), none.column(0).as_ref());
    assert_eq!(back.column(1).as_ref(), none.column(1).as_ref());
}

#[test]
fn values_arrow_cannot_hold_are_refused_with_their_identifier() {
    let shared = mori_shm::share_list(vec![
        (Some("x"), Source::Double(&[1.0])),
        (Some("raw"), Source::Raw(&[1, 2])),
    ])
    .unwrap();
    let err = mori_shm::to_record_batch(&shared).unwrap_err();
    match &err {
        Error::NotArrowConvertible { name, what } => {
            assert_eq!(name, &format!("{}[2]", shared.name()));
            assert!(what.contains("raw"), "{what}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    let ragged = mori_shm::share_list(vec![
        (Some("a"), Source::Double(&[1.0, 2.0])),
        (Some("b"), Source::Integer(&[1])),
    ])
    .unwrap();
    assert!(matches!(
        mori_shm::to_record_batch(&ragged),
        Err(Error::NotArrowConvertible { .. })
    ));
    let bytes = Value::new(mori_format::value::Data::Character(vec![RString {
        bytes: Some(b"\xff".to_vec()),
        encoding: Encoding::Bytes,
    }]));
    let shared_bytes = mori_shm::share(&bytes).unwrap();
    assert!(matches!(
        mori_shm::column_to_arrow(&shared_bytes),
        Err(Error::NotArrowConvertible { .. })
    ));
    let plain = mori_shm::share_f64(&[1.0]).unwrap();
    assert!(matches!(
        mori_shm::to_record_batch(&plain),
        Err(Error::NotAList { .. })
    ));
}

/// A region of this process holding exactly `bytes`, removed when the guard drops.
fn raw_region(bytes: &[u8]) -> (String, common::ShmPath) {
    let (name, guard) = common::ShmPath::unused();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(common::region_file(&name))
        .unwrap();
    file.write_all(bytes).unwrap();
    (name, guard)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_batch_of_supported_columns_round_trips(
        rows in proptest::collection::vec(
            (
                proptest::option::of(any::<f64>().prop_filter("R's NA", |x| !is_na_real(*x))),
                proptest::option::of(any::<i32>().prop_filter("R's NA", |&n| n != NA_INTEGER)),
                proptest::option::of(any::<bool>()),
                proptest::option::of("[^\\x00]{0,8}"),
            ),
            0..40,
        ),
    ) {
        let x: Float64Array = rows.iter().map(|r| r.0).collect();
        let n: Int32Array = rows.iter().map(|r| r.1).collect();
        let ok: BooleanArray = rows.iter().map(|r| r.2).collect();
        let s: StringArray = rows.iter().map(|r| r.3.as_deref()).collect();
        let original = batch(vec![
            ("x", Arc::new(x)),
            ("n", Arc::new(n)),
            ("ok", Arc::new(ok)),
            ("s", Arc::new(s)),
        ]);
        let shared = mori_shm::share_record_batch(&original).unwrap();
        let back = mori_shm::to_record_batch(&map_shared(shared.name()).unwrap()).unwrap();
        prop_assert_eq!(back.num_rows(), rows.len());
        // Doubles bit for bit (NaN payloads included), nulls where Arrow had them.
        let xs = back.column(0).as_primitive::<Float64Type>();
        for (i, r) in rows.iter().enumerate() {
            prop_assert_eq!(xs.is_valid(i).then(|| xs.value(i).to_bits()), r.0.map(f64::to_bits));
        }
        for i in 1..4 {
            prop_assert_eq!(back.column(i).as_ref(), original.column(i).as_ref());
        }
    }

    #[test]
    fn damaged_frames_convert_or_fail_without_panicking(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../mori-format/tests/fixtures/r-mori-0.2.0/data_frame.bin"
        );
        let mut bytes = std::fs::read(fixture).unwrap();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let (name, _guard) = raw_region(&bytes);
        if let Ok(frame) = map_shared(&name) {
            let _ = mori_shm::to_record_batch(&frame);
            for i in 0..frame.len().min(8) {
                if let Ok(column) = frame.get(i) {
                    let _ = mori_shm::column_to_arrow(&column);
                }
            }
        }
    }
}

#[test]
fn the_suite_leaves_no_regions_behind() {
    common::assert_suite_leaves_no_regions("the_suite_leaves_no_regions_behind");
}
