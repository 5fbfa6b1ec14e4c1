//! Corrupt and hostile regions: each fails with its own typed error, never a panic.

use mori_format::layout::MAX_DEPTH;
use mori_format::value::{Data, Value};
use mori_format::{AlignedBuf, ReadError, Region, WriteError, WriteOptions, encoded_len, write};

fn region(v: &Value) -> AlignedBuf {
    let opts = WriteOptions::default();
    let mut buf = AlignedBuf::zeroed(encoded_len(v, &opts).unwrap());
    write(v, &mut buf, &opts).unwrap();
    buf
}

fn set_i32(b: &mut [u8], at: usize, v: i32) {
    b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn set_i64(b: &mut [u8], at: usize, v: i64) {
    b[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

/// `list(c(1, 2), c(3, 4))`: directory entries at 24 and 56, payloads at 128 and 192.
fn two_doubles() -> AlignedBuf {
    region(&Value::list([
        Value::double([1.0, 2.0]),
        Value::double([3.0, 4.0]),
    ]))
}

fn err(b: &[u8]) -> ReadError {
    Region::new(b).expect_err("corrupt region accepted")
}

#[test]
fn bad_magic() {
    let mut b = two_doubles();
    b[0] = b'X';
    assert!(matches!(err(&b), ReadError::BadMagic { offset: 0, .. }));
}

#[test]
fn negative_and_huge_list_lengths() {
    let mut b = two_doubles();
    set_i32(&mut b, 4, -1);
    assert!(matches!(
        err(&b),
        ReadError::BadCount {
            what: "list length",
            value: -1
        }
    ));
    set_i32(&mut b, 4, i32::MAX);
    assert!(matches!(
        err(&b),
        ReadError::Truncated {
            what: "list directory",
            ..
        }
    ));
}

#[test]
fn element_out_of_bounds() {
    let mut b = two_doubles();
    set_i64(&mut b, 56, 1 << 40);
    assert!(matches!(
        err(&b),
        ReadError::ElementOutOfBounds { index: 1, .. }
    ));
    let mut b = two_doubles();
    set_i64(&mut b, 56 + 8, i64::MAX);
    assert!(matches!(
        err(&b),
        ReadError::ElementOutOfBounds { index: 1, .. }
    ));
    let mut b = two_doubles();
    set_i64(&mut b, 56, -64);
    assert!(matches!(
        err(&b),
        ReadError::ElementOutOfBounds { index: 1, .. }
    ));
}

#[test]
fn misaligned_element() {
    let mut b = two_doubles();
    set_i64(&mut b, 56, 200);
    assert!(matches!(
        err(&b),
        ReadError::MisalignedElement {
            index: 1,
            offset: 200
        }
    ));
}

#[test]
fn overlapping_elements() {
    let mut b = two_doubles();
    set_i64(&mut b, 56, 128);
    assert_eq!(err(&b), ReadError::ElementOverlap { index: 1 });
    // an element may not sit on the directory either
    let mut b = two_doubles();
    set_i64(&mut b, 24, 0);
    assert_eq!(err(&b), ReadError::ElementOverlap { index: 0 });
}

#[test]
fn many_entries_pointing_at_one_nested_list_are_refused() {
    // A fan-in region would make a naive walk exponential; order checks keep it linear.
    let inner = Value::list([Value::double([1.0])]);
    let mut b = region(&Value::list(vec![inner; 4]));
    let first = i64::from_ne_bytes(b[24..32].try_into().unwrap());
    for i in 1..4 {
        set_i64(&mut b, 24 + 32 * i, first);
    }
    assert_eq!(err(&b), ReadError::ElementOverlap { index: 1 });
}

#[test]
fn attributes_larger_than_data() {
    let mut b = two_doubles();
    set_i32(&mut b, 56 + 20, 17);
    assert!(matches!(
        err(&b),
        ReadError::AttributesLargerThanData {
            index: 1,
            attrs_size: 17,
            data_size: 16
        }
    ));
    set_i32(&mut b, 56 + 20, -1);
    assert!(matches!(
        err(&b),
        ReadError::AttributesLargerThanData { index: 1, .. }
    ));
}

#[test]
fn unknown_sexptype() {
    let mut b = two_doubles();
    set_i32(&mut b, 56 + 16, 99);
    assert_eq!(err(&b), ReadError::UnknownSexpType { index: 1, code: 99 });
}

#[test]
fn length_disagreeing_with_size() {
    let mut b = two_doubles();
    set_i64(&mut b, 56 + 24, 3);
    assert!(matches!(
        err(&b),
        ReadError::LengthMismatch {
            index: 1,
            length: 3,
            ..
        }
    ));
    let mut b = two_doubles();
    set_i64(&mut b, 56 + 24, i64::MAX);
    assert!(matches!(
        err(&b),
        ReadError::LengthMismatch { index: 1, .. }
    ));
}

#[test]
fn list_attributes_out_of_bounds() {
    let mut b = two_doubles();
    set_i64(&mut b, 16, 1 << 20);
    assert!(matches!(err(&b), ReadError::AttributesOutOfBounds { .. }));
    let mut b = two_doubles();
    set_i64(&mut b, 8, 8);
    assert!(matches!(
        err(&b),
        ReadError::AttributesOutOfBounds { offset: 8, .. }
    ));
    // over the elements
    let mut b = two_doubles();
    set_i64(&mut b, 8, 128);
    set_i64(&mut b, 16, 8);
    assert!(matches!(err(&b), ReadError::AttributesOutOfBounds { .. }));
}

#[test]
fn vector_header_claiming_more_than_the_region() {
    let mut b = region(&Value::double([1.0, 2.0]));
    set_i64(&mut b, 8, i64::MAX);
    assert!(matches!(
        err(&b),
        ReadError::Truncated {
            what: "vector data",
            ..
        }
    ));
    set_i64(&mut b, 8, -5);
    assert!(matches!(
        err(&b),
        ReadError::BadCount {
            what: "vector length",
            value: -5
        }
    ));
    let mut b = region(&Value::double([1.0, 2.0]));
    set_i64(&mut b, 16, 1);
    assert!(matches!(
        err(&b),
        ReadError::Truncated {
            what: "vector data",
            ..
        }
    ));
    let mut b = region(&Value::double([1.0, 2.0]));
    set_i32(&mut b, 4, 16);
    assert_eq!(err(&b), ReadError::UnknownSexpType { index: 0, code: 16 });
}

#[test]
fn string_tables_that_lie() {
    let strings = Value::character(["ab", "c"]);
    // MORS: table at 24, entry 1 at 40: offset, length, encoding
    let mut b = region(&strings);
    set_i64(&mut b, 40, 100);
    assert!(matches!(
        err(&b),
        ReadError::StringOutOfBounds {
            index: 1,
            offset: 100,
            len: 1
        }
    ));
    let mut b = region(&strings);
    set_i32(&mut b, 40 + 8, i32::MAX);
    assert!(matches!(
        err(&b),
        ReadError::StringOutOfBounds { index: 1, .. }
    ));
    let mut b = region(&strings);
    set_i32(&mut b, 40 + 12, 7);
    assert_eq!(err(&b), ReadError::BadEncoding { index: 1, code: 7 });
    let mut b = region(&strings);
    set_i64(&mut b, 8, i64::MAX);
    assert!(matches!(
        err(&b),
        ReadError::Truncated {
            what: "string table",
            ..
        }
    ));
    let mut b = region(&strings);
    set_i64(&mut b, 8, -1);
    assert!(matches!(
        err(&b),
        ReadError::BadCount {
            what: "string count",
            value: -1
        }
    ));
    let mut b = region(&strings);
    set_i64(&mut b, 16, i64::MAX);
    assert!(matches!(
        err(&b),
        ReadError::Truncated {
            what: "string data",
            ..
        }
    ));
    let mut b = region(&strings);
    set_i32(&mut b, 4, -3);
    assert!(matches!(
        err(&b),
        ReadError::BadCount {
            what: "attrs_size",
            value: -3
        }
    ));
}

/// A chain of `depth` MORLs, each holding the next as its only element.
fn nested_chain(depth: usize) -> AlignedBuf {
    let mut b = AlignedBuf::zeroed(64 * (depth + 1));
    for level in 0..=depth {
        let base = 64 * level;
        let size = b.len() - base;
        b[base..base + 4].copy_from_slice(b"LROM");
        let n = if level == depth { 0 } else { 1 };
        set_i32(&mut b, base + 4, n);
        set_i64(&mut b, base + 8, size as i64);
        if n == 1 {
            set_i64(&mut b, base + 24, 64);
            set_i64(&mut b, base + 32, (size - 64) as i64);
            set_i32(&mut b, base + 40, 19);
            set_i64(&mut b, base + 48, if level + 1 == depth { 0 } else { 1 });
        }
    }
    b
}

#[test]
fn nesting_depth_is_limited() {
    assert!(Region::new(&nested_chain(MAX_DEPTH)).is_ok());
    assert_eq!(
        err(&nested_chain(MAX_DEPTH + 1)),
        ReadError::TooDeep { limit: MAX_DEPTH }
    );
    assert_eq!(
        err(&nested_chain(10_000)),
        ReadError::TooDeep { limit: MAX_DEPTH }
    );
}

fn nested_value(depth: usize) -> Value {
    let mut v = Value::list([]);
    for _ in 0..depth {
        v = Value::list([v]);
    }
    v
}

#[test]
fn the_writer_refuses_what_the_reader_would() {
    let opts = WriteOptions::default();
    let deepest = nested_value(MAX_DEPTH);
    let b = region(&deepest);
    assert_eq!(&b[..], &nested_chain(MAX_DEPTH)[..]);
    assert_eq!(Region::new(&b).unwrap().root().to_value().unwrap(), deepest);
    assert_eq!(
        encoded_len(&nested_value(MAX_DEPTH + 1), &opts),
        Err(WriteError::TooDeep { limit: MAX_DEPTH })
    );
}

#[test]
fn writer_errors_are_typed() {
    let opts = WriteOptions::default();
    assert_eq!(
        encoded_len(&Value::new(Data::Null), &opts),
        Err(WriteError::NotShareable("NULL"))
    );
    assert_eq!(
        encoded_len(&Value::new(Data::Serialized(vec![1])), &opts),
        Err(WriteError::NotShareable("a serialized blob"))
    );
    assert_eq!(
        encoded_len(&Value::character(["ok", "n\0l"]), &opts),
        Err(WriteError::NulInString { index: 1 })
    );
    let mut null = Value::new(Data::Null);
    null.attrs.set("class", Value::character(["x"]));
    assert_eq!(
        encoded_len(&Value::list([null]), &opts),
        Err(WriteError::AttributesOnFallback)
    );
    let mut small = [0u8; 70];
    assert_eq!(
        write(&Value::double([1.0]), &mut small, &opts),
        Err(WriteError::BufferTooSmall {
            needed: 72,
            got: 70
        })
    );
    let (a, b) = ([1.0, 2.0], [1.0]);
    let df = mori_format::Source::DataFrame(vec![
        ("a", mori_format::Source::Double(&a)),
        ("b", mori_format::Source::Double(&b)),
    ]);
    assert_eq!(
        df.encoded_len(&opts),
        Err(WriteError::RaggedDataFrame {
            column: 1,
            len: 1,
            nrow: 2
        })
    );
}
