//! Identifiers: R's grammar, every malformed case, and resolution inside a region.

mod common;

use mori_format::path::{Identifier, MAX_PATH, PathError, RegionName};
use mori_format::{Region, ResolveError, View};
use proptest::prelude::*;

fn parse(s: &str) -> Result<Identifier, PathError> {
    Identifier::parse(s)
}

#[test]
fn roots_and_paths_parse_to_zero_based_indices() {
    let id = parse("/mori_4d1b_1").unwrap();
    assert_eq!(
        id.region,
        RegionName {
            pid: 0x4d1b,
            counter: 1
        }
    );
    assert!(id.path.is_empty());
    assert_eq!(id.to_string(), "/mori_4d1b_1");
    let id = parse("/mori_ffffffff_0[2,1,2147483647]").unwrap();
    assert_eq!(
        id.region,
        RegionName {
            pid: u32::MAX,
            counter: 0
        }
    );
    assert_eq!(id.path, vec![1, 0, 2_147_483_646]);
    assert_eq!(id.to_string(), "/mori_ffffffff_0[2,1,2147483647]");
    // leading zeros in the hex runs are accepted, as R accepts them
    assert_eq!(
        parse("/mori_00a_01").unwrap().region,
        RegionName {
            pid: 10,
            counter: 1
        }
    );
}

#[test]
fn every_malformed_form_has_its_error() {
    let long_path = format!("/mori_1_1[{}]", vec!["1"; MAX_PATH + 1].join(","));
    let max_path = format!("/mori_1_1[{}]", vec!["9"; MAX_PATH].join(","));
    assert_eq!(parse(&max_path).unwrap().path, vec![8; MAX_PATH]);
    let cases: Vec<(String, PathError)> = vec![
        ("/mori_1_1[0]".into(), PathError::BadIndex { at: 10 }),
        ("/mori_1_1[01]".into(), PathError::BadIndex { at: 10 }),
        ("/mori_1_1[]".into(), PathError::EmptyPath),
        ("/mori_1_1[1,]".into(), PathError::BadIndex { at: 12 }),
        ("/mori_1_1[1,,2]".into(), PathError::BadIndex { at: 12 }),
        ("/mori_1_1[-1]".into(), PathError::BadIndex { at: 10 }),
        (long_path, PathError::PathTooLong),
        ("/mori_1_1[2147483648]".into(), PathError::IndexOverflow),
        (
            "/mori_1_1[99999999999999999999]".into(),
            PathError::IndexOverflow,
        ),
        ("/mori_1_1[1".into(), PathError::Unterminated),
        ("/mori_1_1[1]x".into(), PathError::Trailing),
        ("/mori_1_1[1] ".into(), PathError::Trailing),
        (
            "/mori_1_1[1 ]".into(),
            PathError::Unexpected { byte: b' ', at: 11 },
        ),
        (
            "/mori_1_1 ".into(),
            PathError::Unexpected { byte: b' ', at: 9 },
        ),
        (" /mori_1_1".into(), PathError::BadPrefix),
        ("/mori_4D1B_1".into(), PathError::BadHex),
        ("/mori__1".into(), PathError::BadHex),
        ("/mori_1_".into(), PathError::BadHex),
        ("/mori_1".into(), PathError::MissingSeparator),
        ("/mori_1x_1".into(), PathError::MissingSeparator),
        (
            "/mori_1_1x".into(),
            PathError::Unexpected { byte: b'x', at: 9 },
        ),
        (
            "/mori_1_1\0".into(),
            PathError::Unexpected { byte: 0, at: 9 },
        ),
        ("/MORI_1_1".into(), PathError::BadPrefix),
        ("".into(), PathError::BadPrefix),
        ("/mori_100000000_1".into(), PathError::HexOverflow),
        // prefix of exactly 30 bytes: too long; 29 is the most
        (
            format!("/mori_{}_1", "0".repeat(22)),
            PathError::NameTooLong { len: 30 },
        ),
        (
            format!("/mori_1_1[1]{}", "x".repeat(2000)),
            PathError::TooLong { len: 2012 },
        ),
    ];
    for (s, e) in cases {
        assert_eq!(parse(&s), Err(e), "{s:?}");
    }
    assert!(parse(&format!("/mori_{}_1", "0".repeat(21))).is_ok());
}

#[cfg(not(windows))]
#[test]
fn only_this_platforms_literal_is_accepted() {
    assert_eq!(parse("Local\\mori_1_1"), Err(PathError::BadPrefix));
}

#[test]
fn children_stop_at_rs_limits() {
    let mut id = Identifier::root(RegionName { pid: 1, counter: 2 });
    for _ in 0..MAX_PATH {
        id = id.child(0).unwrap();
    }
    assert!(id.child(0).is_none());
    assert!(Identifier::root(id.region).child(i32::MAX as u32).is_none());
    assert_eq!(parse(&id.to_string()).unwrap(), id);
}

proptest! {
    #[test]
    fn formatted_identifiers_parse_back(
        pid in any::<u32>(),
        counter in any::<u32>(),
        path in proptest::collection::vec(0u32..i32::MAX as u32, 0..=MAX_PATH),
    ) {
        let id = Identifier { region: RegionName { pid, counter }, path };
        prop_assert_eq!(parse(&id.to_string()), Ok(id));
    }

    #[test]
    fn arbitrary_strings_never_panic(s in "(/mori_)?[0-9a-fA-F_\\[\\], x]{0,40}") {
        mori_format::fuzzing::path_parse(s.as_bytes());
    }
}

#[test]
fn resolution_follows_rs_error_table() {
    // list(p = 1:3, q = list(r = "deep", s = c(2.5, NA)))
    let buf = common::fixture("list_nested");
    let region = Region::new(&buf).unwrap();
    let View::Character(deep) = region
        .resolve(&parse("/mori_1_1[2,1]").unwrap().path)
        .unwrap()
    else {
        panic!("[2,1] is not the string")
    };
    assert_eq!(deep.get(0).unwrap().as_str(), Some("deep"));
    assert!(matches!(region.resolve(&[0]).unwrap(), View::Integer(_)));
    assert!(matches!(region.resolve(&[1]).unwrap(), View::List(_)));
    assert!(matches!(region.resolve(&[]).unwrap(), View::List(_)));
    assert_eq!(
        region.resolve(&[2]).unwrap_err(),
        ResolveError::LeafIndexOutOfBounds { index: 2, len: 2 }
    );
    assert_eq!(
        region.resolve(&[1, 2]).unwrap_err(),
        ResolveError::LeafIndexOutOfBounds { index: 2, len: 2 }
    );
    assert_eq!(
        region.resolve(&[5, 0]).unwrap_err(),
        ResolveError::PathIndexOutOfBounds { index: 5, len: 2 }
    );
    assert_eq!(
        region.resolve(&[0, 0]).unwrap_err(),
        ResolveError::NotNestedList { step: 0 }
    );
    assert_eq!(
        region.resolve(&[1, 0, 0]).unwrap_err(),
        ResolveError::NotNestedList { step: 1 }
    );
    let buf = common::fixture("double");
    let region = Region::new(&buf).unwrap();
    assert_eq!(region.resolve(&[0]).unwrap_err(), ResolveError::NotAList);
    assert!(matches!(region.resolve(&[]).unwrap(), View::Double(_)));
}
