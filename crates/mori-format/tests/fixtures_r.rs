//! Regions written by R's mori 0.2.0: our reader sees what R deparsed, and our writer
//! reproduces R's bytes.

mod common;

use common::{FIXTURES, WITHOUT_ATTRIBUTES, expected, fixture, strip_attributes};
use mori_format::value::{Data, Value};
use mori_format::{AlignedBuf, ReadError, Region, View, WriteOptions, encoded_len, read, write};

/// The value a view holds, attributes left out, built through the view accessors.
fn data_only(view: View<'_>) -> Value {
    Value::new(match view {
        View::Logical(v) => Data::Logical(v.data().to_vec()),
        View::Integer(v) => Data::Integer(v.data().to_vec()),
        View::Double(v) => Data::Double(v.data().to_vec()),
        View::Complex(v) => Data::Complex(v.data().to_vec()),
        View::Raw(v) => Data::Raw(v.data().to_vec()),
        View::Character(s) => Data::Character(s.iter().map(|s| s.to_owned()).collect()),
        View::List(l) => Data::List(l.iter().map(|v| data_only(v.unwrap())).collect()),
        View::Serialized(b) if mori_format::read::is_serialized_null(b) => Data::Null,
        View::Serialized(b) => Data::Serialized(b.to_vec()),
    })
}

#[test]
fn every_fixture_reads_to_the_data_r_deparsed() {
    for name in FIXTURES {
        let buf = fixture(name);
        let view = read(&buf).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(data_only(view), strip_attributes(&expected(name)), "{name}");
    }
}

#[test]
fn attribute_free_fixtures_read_to_exactly_their_value() {
    for name in WITHOUT_ATTRIBUTES {
        let buf = fixture(name);
        assert_eq!(
            read(&buf).unwrap().to_value().unwrap(),
            expected(name),
            "{name}"
        );
    }
}

#[test]
fn doubles_keep_na_and_nan_apart() {
    let buf = fixture("double");
    let View::Double(v) = read(&buf).unwrap() else {
        panic!("double fixture is not a double vector")
    };
    let bits: Vec<u64> = v.data().iter().map(|x| x.to_bits()).collect();
    assert_eq!(bits[1], mori_format::value::NA_REAL_BITS);
    assert_eq!(bits[4], 0x7FF8_0000_0000_0000);
}

#[test]
fn strings_carry_their_encoding_and_na() {
    use mori_format::value::Encoding;
    let buf = fixture("character");
    let View::Character(s) = read(&buf).unwrap() else {
        panic!("character fixture is not a character vector")
    };
    let got: Vec<_> = s.iter().map(|x| (x.as_str(), x.encoding)).collect();
    assert_eq!(
        got,
        vec![
            (Some("a"), Encoding::Native),
            (None, Encoding::Native),
            (Some("h\u{e9}llo"), Encoding::Utf8),
            (Some(""), Encoding::Native),
            (Some("\u{65e5}\u{672c}"), Encoding::Utf8),
        ]
    );
    assert!(s.get(1).unwrap().is_na());
    assert!(s.get(5).is_none());
}

/// Where R put each attribute blob: (fixture, path to the value, blob length).
const BLOBS: &[(&str, &[u32], usize)] = &[
    ("named_double", &[], 83),
    ("matrix", &[], 157),
    ("factor", &[], 120),
    ("list_nested", &[], 74),
    ("list_nested", &[1], 74),
    ("list_fallback", &[], 83),
    ("data_frame", &[], 180),
    ("data_frame", &[2], 118),
];

/// The names of every list R wrote, read in place, are the names its attributes decode to.
#[test]
fn names_read_in_place_match_the_decoded_names_of_r_lists() {
    fn check(name: &str, view: View<'_>, lists: &mut usize) {
        let View::List(list) = view else { return };
        *lists += 1;
        assert_eq!(
            list.names_in_place().unwrap().map(|n| n.to_vec()),
            list.names().unwrap(),
            "{name}"
        );
        for element in list.iter() {
            check(name, element.unwrap(), lists);
        }
    }
    let mut lists = 0;
    for name in FIXTURES {
        let buf = fixture(name);
        check(name, read(&buf).unwrap(), &mut lists);
    }
    assert!(lists >= 4, "the fixtures hold lists ({lists})");
}

#[test]
fn attribute_blobs_sit_where_r_put_them() {
    for &(name, path, len) in BLOBS {
        let buf = fixture(name);
        let region = Region::new(&buf).unwrap();
        let blob = region.resolve(path).unwrap().attributes_blob();
        assert_eq!(blob.len(), len, "{name} {path:?}");
        assert!(
            blob.starts_with(b"B\n\x03\x00\x00\x00\x00\x05\x04\x00"),
            "{name} {path:?}"
        );
        // every blob offset is inside the region bytes
        let start = blob.as_ptr() as usize - buf.as_ptr() as usize;
        assert!(start + len <= buf.len());
    }
    for name in WITHOUT_ATTRIBUTES {
        let buf = fixture(name);
        assert!(read(&buf).unwrap().attributes_blob().is_empty(), "{name}");
    }
}

#[test]
fn fallback_elements_are_the_serialized_bytes() {
    let buf = fixture("list_fallback");
    let View::List(l) = read(&buf).unwrap() else {
        panic!("not a list")
    };
    let View::Serialized(null) = l.get(1).unwrap() else {
        panic!("NULL element is not a fallback")
    };
    assert_eq!(null.len(), 27);
    assert!(mori_format::read::is_serialized_null(null));
    let View::Serialized(lang) = l.get(2).unwrap() else {
        panic!("language element is not a fallback")
    };
    assert_eq!(lang, &common::quote_x_plus_y()[..]);
}

#[test]

fn every_fixture_reads_to_exactly_its_value_with_attributes() {
    for name in FIXTURES {
        let buf = fixture(name);
        assert_eq!(
            read(&buf).unwrap().to_value().unwrap(),
            expected(name),
            "{name}"
        );
    }
}

fn write_fresh(v: &Value) -> AlignedBuf {
    let opts = WriteOptions::default();
    let len = encoded_len(v, &opts).unwrap();
    // a dirty buffer: the writer must zero every padding byte itself
    let mut buf = AlignedBuf::from_bytes(&vec![0xA5; len]);
    assert_eq!(write(v, &mut buf, &opts).unwrap(), len);
    buf
}

#[test]
fn writer_reproduces_r_bytes_for_fixtures_without_attributes() {
    for name in WITHOUT_ATTRIBUTES {
        let ours = write_fresh(&expected(name));
        assert_eq!(&ours[..], &fixture(name)[..], "{name}");
    }
}

#[test]

fn writer_reproduces_r_bytes_for_every_fixture() {
    for name in FIXTURES {
        let ours = write_fresh(&expected(name));
        assert_eq!(&ours[..], &fixture(name)[..], "{name}");
    }
}

#[test]
fn every_truncation_errors_or_reads_a_consistent_prefix() {
    for name in FIXTURES {
        let full = fixture(name);
        let whole = data_only(read(&full).unwrap());
        for len in 0..full.len() {
            let cut = AlignedBuf::from_bytes(&full[..len]);
            match read(&cut) {
                // Only the zero tail padding after a list's last blob may be cut safely.
                Ok(v) => {
                    assert!(full[len..].iter().all(|&b| b == 0), "{name} cut at {len}");
                    assert_eq!(data_only(v), whole, "{name} cut at {len}");
                }
                Err(e) => assert!(!matches!(e, ReadError::MisalignedBuffer), "{name}: {e}"),
            }
        }
    }
}

#[test]
fn random_byte_flips_never_panic() {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut accepted = 0usize;
    let mut rejected = 0usize;
    for name in FIXTURES {
        let full = fixture(name);
        for _ in 0..3000 {
            let mut buf = AlignedBuf::from_bytes(&full);
            for _ in 0..1 + next() % 3 {
                let at = (next() % buf.len() as u64) as usize;
                buf[at] ^= 1 << (next() % 8);
            }
            mori_format::fuzzing::region_read(&buf);
            if Region::new(&buf).is_ok() {
                accepted += 1;
            } else {
                rejected += 1;
            }
        }
    }
    // Flips in padding and payload bytes are harmless; flips in headers are caught.
    assert!(
        accepted > 0 && rejected > 0,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn a_misaligned_buffer_is_refused() {
    let full = fixture("double");
    let mut shifted = AlignedBuf::zeroed(full.len() + 1);
    shifted[1..].copy_from_slice(&full);
    assert_eq!(
        Region::new(&shifted[1..]).unwrap_err(),
        ReadError::MisalignedBuffer
    );
}
