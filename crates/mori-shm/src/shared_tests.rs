//! Tests of the handles and the functions that make them (`shared`).

use super::*;
use proptest::prelude::*;

/// A region holding exactly `bytes`, whatever they are.
fn raw_region(bytes: &[u8]) -> (String, NameOwner) {
    let (mapping, owner) = region::create(bytes.len(), |r| {
        r.bytes_mut()?.copy_from_slice(bytes);
        Ok(())
    })
    .unwrap();
    (mapping.name().to_owned(), owner)
}

#[test]
fn empty_and_garbage_regions_are_corrupt_not_panics() {
    for bytes in [
        &b""[..],
        b"garbage!",
        &[0u8; 64],
        b"HROM\x0e\0\0\0\xff\xff\xff\xff\xff\xff\xff\x7f",
    ] {
        let (name, _owner) = raw_region(bytes);
        let err = map_shared(&name).unwrap_err();
        assert!(
            matches!(err, Error::Corrupt { name: ref n, .. } if *n == name),
            "{err:?}"
        );
    }
}

#[test]
fn paths_report_rs_cases_with_the_list_they_indexed() {
    let shared = share_list(vec![
        (None, Source::Double(&[1.0])),
        (None, Source::List(vec![(None, Source::Integer(&[1]))])),
    ])
    .unwrap();
    let n = shared.name();
    let err = map_shared(&format!("{n}[2,5]")).unwrap_err();
    assert!(
        matches!(err, Error::IndexOutOfRange { index: 4, len: 1, ref name } if *name == format!("{n}[2]")),
        "{err:?}"
    );
    let err = map_shared(&format!("{n}[2,1,1]")).unwrap_err();
    assert!(
        matches!(err, Error::NotAList { ref name } if *name == format!("{n}[2,1]")),
        "{err:?}"
    );
    let err = map_shared(&format!("{n}[1,1]")).unwrap_err();
    assert!(
        matches!(err, Error::NotAList { ref name } if *name == format!("{n}[1]")),
        "{err:?}"
    );
    let plain = share_f64(&[1.0]).unwrap();
    let err = map_shared(&format!("{}[1]", plain.name())).unwrap_err();
    assert!(matches!(err, Error::NotAList { .. }), "{err:?}");
    assert!(matches!(plain.get(0), Err(Error::NotAList { .. })));
}

#[test]
fn unshareable_values_are_refused_before_a_region_exists() {
    let err = share(&Value::new(mori_format::value::Data::Null)).unwrap_err();
    assert!(matches!(err, Error::Unshareable { .. }), "{err:?}");
    let err = share_strings(&["a\0b"]).unwrap_err();
    assert!(matches!(err, Error::Unshareable { .. }), "{err:?}");
    // The writer refuses before any file exists (a failure after creation unlinks, see
    // `region::tests::a_failed_fill_unlinks_the_name`).
}

#[test]
fn handles_can_cross_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    let shared = share_f64(&[1.0, 2.0]).unwrap();
    send_sync(&shared);
    let view = shared.view();
    send_sync(&view);
    let sum = std::thread::spawn(move || view.as_f64().unwrap().iter().sum::<f64>())
        .join()
        .unwrap();
    assert_eq!(sum, 3.0);
}

#[test]
fn views_of_elements_outlive_the_list_view_and_the_owner() {
    let shared = share_data_frame(vec![
        ("x", Source::Double(&[1.0, 2.0])),
        ("s", Source::OptStrings(&[Some("a"), None])),
    ])
    .unwrap();
    let s = shared.get_named("s").unwrap().unwrap();
    drop(shared);
    let strings = s.as_strings().unwrap();
    assert_eq!(strings.get(0).and_then(|x| x.as_str()), Some("a"));
    assert!(strings.get(1).unwrap().is_na());
    assert_eq!(s.identifier().unwrap().rsplit('[').next(), Some("2]"));
}

#[test]
fn every_typed_share_round_trips_through_a_fresh_attach() {
    let d = share_f64(&[1.5, f64::NAN]).unwrap();
    assert_eq!(map_shared(d.name()).unwrap().as_f64().unwrap()[0], 1.5);
    let i = share_i32(&[1, i32::MIN]).unwrap();
    assert_eq!(
        map_shared(i.name()).unwrap().as_i32(),
        Some(&[1, i32::MIN][..])
    );
    let r = share_raw(b"\x00\xff").unwrap();
    assert_eq!(
        map_shared(r.name()).unwrap().as_raw(),
        Some(&b"\x00\xff"[..])
    );
    let owned = vec![String::from("x"), String::from("\u{e9}")];
    let s = share_strings(&owned).unwrap();
    let value = map_shared(s.name()).unwrap().to_value().unwrap();
    assert_eq!(value, Value::character(["x", "\u{e9}"]));
    let v = share(&Value::named_list([("a", Value::integer([3]))])).unwrap();
    assert_eq!(v.names().unwrap().unwrap()[0].as_str(), Some("a"));
    assert_eq!(v.as_f64(), None);
    assert_eq!(v.as_complex(), None);
    assert_eq!(v.as_logical(), None);
    assert!(!v.is_empty());
}

/// The bytes of a fresh attach to the region `shared` lives in.
fn region_bytes(shared: &Shared) -> Vec<u8> {
    region::attach(shared.name()).unwrap().bytes().to_vec()
}

/// What the format writer makes of `src` in ordinary memory.
fn written_in_memory(src: &Source<'_>) -> Vec<u8> {
    let plan = src.plan(&WriteOptions::default()).unwrap();
    let mut buf = vec![0xAA; plan.len()];
    plan.write_into(&mut buf).unwrap();
    buf
}

#[test]
fn regions_hold_the_writers_bytes_whichever_way_each_part_goes_in() {
    use mori_format::value::Attributes;
    // Data at, above and just below the size that goes in with pwrite, a string vector
    // large enough that its part of the mapping is populated, attributes after data.
    let big: Vec<f64> = (0..PWRITE_MIN / 8 + 999).map(|i| i as f64 * 0.5).collect();
    let at_min: Vec<u8> = (0..PWRITE_MIN).map(|i| (i * 7) as u8).collect();
    let below: Vec<i32> = (0..PWRITE_MIN / 4 - 1).map(|i| i as i32 - 5).collect();
    let column: Vec<f64> = below.iter().map(|&v| f64::from(v)).collect();
    let owned: Vec<String> = (0..20_000).map(|i| format!("s{i}")).collect();
    let strs: Vec<&str> = owned.iter().map(String::as_str).collect();
    let mut dim = Attributes::new();
    dim.set("dim", Value::integer([big.len() as i32, 1]));
    let cases: Vec<(Source<'_>, usize)> = vec![
        (Source::Double(&big), 1),
        (Source::Raw(&at_min), 1),
        (Source::Integer(&below), 0),
        (Source::Strings(&strs), 0),
        (
            Source::List(vec![
                (Some("big"), Source::Double(&big)),
                (None, Source::Integer(&below)),
                (Some("s"), Source::Strings(&strs)),
                (
                    Some("nested"),
                    Source::List(vec![
                        (None, Source::Raw(&at_min)),
                        (
                            None,
                            Source::Attributed(Box::new(Source::Double(&big)), &dim),
                        ),
                    ]),
                ),
            ]),
            3,
        ),
        (
            Source::DataFrame(vec![
                ("x", Source::Double(&column)),
                ("y", Source::Integer(&below)),
            ]),
            1,
        ),
    ];
    for (i, (src, expect_payloads)) in cases.iter().enumerate() {
        let plan = src.plan(&WriteOptions::default()).unwrap();
        assert_eq!(
            plan.payloads(PWRITE_MIN).unwrap().len(),
            *expect_payloads,
            "case {i} takes the paths it is meant to test"
        );
        let shared = share_source(src).unwrap();
        let expected = written_in_memory(src);
        assert!(region_bytes(&shared) == expected, "case {i}: bytes differ");
        assert_eq!(
            shared.to_value().unwrap(),
            map_shared(shared.name()).unwrap().to_value().unwrap()
        );
    }
}

#[test]
fn gaps_are_the_ranges_no_payload_covers() {
    use mori_format::write::Payload;
    let data = [0u8; 10];
    let p = |offset, n| Payload {
        offset,
        bytes: &data[..n],
    };
    assert_eq!(gaps(&[], 50), vec![0..50]);
    assert_eq!(gaps(&[p(0, 10)], 10), Vec::<std::ops::Range<usize>>::new());
    assert_eq!(gaps(&[p(64, 10)], 74), vec![0..64]);
    assert_eq!(
        gaps(&[p(64, 10), p(74, 5), p(128, 10)], 150),
        vec![0..64, 79..128, 138..150]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_identifier_text_is_handled_without_panicking(s in "(/mori_[0-9a-f]{1,9}_[0-9a-f]{1,9})?[\\[\\],0-9a-z/ ]{0,20}") {
        let _ = map_shared(&s);
    }

    #[test]
    fn any_region_bytes_are_handled_without_panicking(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        magic in prop_oneof![Just(*b"HROM"), Just(*b"SROM"), Just(*b"LROM")],
    ) {
        let mut bytes = bytes;
        if bytes.len() >= 4 {
            bytes[..4].copy_from_slice(&magic);
        }
        let (name, _owner) = raw_region(&bytes);
        if let Ok(view) = map_shared(&name) {
            let _ = view.to_value();
            for i in 0..view.len().min(4) {
                if let Ok(child) = view.get(i) {
                    let _ = child.to_value();
                }
            }
        }
    }
}
