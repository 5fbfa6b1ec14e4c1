//! The worked example of the wire format: `data.frame(a = c(1.5, NA), b = c("x", NA))`.

use mori_format::value::{Data, NA_REAL, RString, Value};
use mori_format::{AlignedBuf, Region, View, WriteOptions, encoded_len, write};

fn example() -> Value {
    Value::data_frame(
        [
            ("a", Value::double([1.5, NA_REAL])),
            (
                "b",
                Value::new(Data::Character(vec![RString::new("x"), RString::NA])),
            ),
        ],
        2,
    )
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_ne_bytes(b[at..at + 8].try_into().unwrap())
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
}

fn region() -> AlignedBuf {
    let opts = WriteOptions::default();
    let mut buf = AlignedBuf::zeroed(encoded_len(&example(), &opts).unwrap());
    write(&example(), &mut buf, &opts).unwrap();
    buf
}

#[test]
fn worked_example_has_the_documented_offsets() {
    let b = region();
    assert_eq!(&b[..4], b"LROM");
    assert_eq!(i32_at(&b, 4), 2);
    // element 0: REALSXP at 128, 16 bytes, length 2
    assert_eq!(
        (
            i64_at(&b, 24),
            i64_at(&b, 32),
            i32_at(&b, 40),
            i32_at(&b, 44),
            i64_at(&b, 48)
        ),
        (128, 16, 14, 0, 2)
    );
    assert_eq!(&b[128..136], &1.5f64.to_ne_bytes());
    assert_eq!(&b[136..144], &0x7FF0_0000_0000_07A2u64.to_ne_bytes());
    // element 1: STRSXP at 192, table {0,1,0} {0,-1,0}, pad 224..256, 'x' at 256
    assert_eq!(
        (
            i64_at(&b, 56),
            i64_at(&b, 64),
            i32_at(&b, 72),
            i32_at(&b, 76),
            i64_at(&b, 80)
        ),
        (192, 65, 16, 0, 2)
    );
    assert_eq!(
        (i64_at(&b, 192), i32_at(&b, 200), i32_at(&b, 204)),
        (0, 1, 0)
    );
    assert_eq!(
        (i64_at(&b, 208), i32_at(&b, 216), i32_at(&b, 220)),
        (0, -1, 0)
    );
    assert!(b[224..256].iter().all(|&x| x == 0));
    assert_eq!(b[256], b'x');
    // list attributes at 320, S bytes, then padding to 64
    let s = i64_at(&b, 16) as usize;
    assert_eq!(i64_at(&b, 8), 320);
    assert_eq!(b.len(), 320 + s.div_ceil(64) * 64);
    let region = Region::new(&b).unwrap();
    let View::List(l) = region.root() else {
        panic!("not a list")
    };
    assert_eq!(l.attributes_blob().len(), s);
}

#[test]

fn worked_example_is_512_bytes_with_the_pairlist_form() {
    let b = region();
    assert_eq!(i64_at(&b, 16), 162);
    assert_eq!(b.len(), 512);
}
