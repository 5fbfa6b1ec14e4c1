//! Property: whatever we write reads back to the same value, through both writer inputs.

use mori_format::value::{Attributes, Data, Encoding, NA_INTEGER, RString, Value};
use mori_format::{AlignedBuf, Source, WriteOptions, encoded_len, read, write};
use proptest::prelude::*;

fn rstring() -> impl Strategy<Value = RString> {
    prop_oneof![
        1 => Just(RString::NA),
        4 => "[^\u{0}]{0,12}".prop_map(|s| RString::new(&s)),
        1 => (proptest::collection::vec(1u8..=255, 0..8), 0i32..4).prop_map(|(b, e)| RString {
            bytes: Some(b),
            encoding: Encoding::from_code(e).unwrap(),
        }),
    ]
}

fn atomic() -> impl Strategy<Value = Data> {
    let n = 0..20usize;
    prop_oneof![
        proptest::collection::vec(prop_oneof![Just(0), Just(1), Just(NA_INTEGER)], n.clone())
            .prop_map(Data::Logical),
        proptest::collection::vec(any::<i32>(), n.clone()).prop_map(Data::Integer),
        proptest::collection::vec(any::<u64>().prop_map(f64::from_bits), n.clone())
            .prop_map(Data::Double),
        proptest::collection::vec(
            (any::<u64>(), any::<u64>()).prop_map(|(a, b)| [f64::from_bits(a), f64::from_bits(b)]),
            n.clone()
        )
        .prop_map(Data::Complex),
        proptest::collection::vec(any::<u8>(), n.clone()).prop_map(Data::Raw),
        proptest::collection::vec(rstring(), n).prop_map(Data::Character),
    ]
}

/// Attributes to put on a value: none, or (when `on`) names and a class.
fn attributes(on: bool, len: usize) -> BoxedStrategy<Attributes> {
    if !on {
        return Just(Attributes::new()).boxed();
    }
    (any::<bool>(), any::<bool>())
        .prop_map(move |(names, class)| {
            let mut a = Attributes::new();
            if names {
                let n: Vec<String> = (0..len).map(|i| format!("n{i}")).collect();
                a.set("names", Value::character(n));
            }
            if class {
                a.set("class", Value::character(["thing"]));
            }
            a
        })
        .boxed()
}

fn with_attributes(data: BoxedStrategy<Data>, on: bool) -> BoxedStrategy<Value> {
    data.prop_flat_map(move |data| {
        let len = match &data {
            Data::List(v) => v.len(),
            Data::Character(v) => v.len(),
            Data::Double(v) => v.len(),
            _ => 0,
        };
        attributes(on, len).prop_map(move |attrs| Value {
            data: data.clone(),
            attrs,
        })
    })
    .boxed()
}

/// Any value a region can hold at its root; `attrs` switches attributes on, `null` allows
/// `NULL` list elements (both need R serialization).
fn value(attrs: bool, null: bool) -> BoxedStrategy<Value> {
    let leaf = with_attributes(atomic().boxed(), attrs);
    leaf.prop_recursive(4, 40, 6, move |inner| {
        let element = prop_oneof![
            8 => inner,
            1 => proptest::collection::vec(1u8..=255, 1..30)
                .prop_map(|b| Value::new(Data::Serialized(b))),
            if null { 1 } else { 0 } => Just(Value::new(Data::Null)),
        ];
        with_attributes(
            proptest::collection::vec(element, 0..6)
                .prop_map(Data::List)
                .boxed(),
            attrs,
        )
    })
    .boxed()
}

fn write_into(v: &Value, fill: u8) -> AlignedBuf {
    let opts = WriteOptions::default();
    let len = encoded_len(v, &opts).unwrap();
    let mut buf = AlignedBuf::from_bytes(&vec![fill; len]);
    assert_eq!(write(v, &mut buf, &opts).unwrap(), len);
    buf
}

fn check_roundtrip(v: &Value) {
    let buf = write_into(v, 0);
    assert_eq!(
        &buf[..],
        &write_into(v, 0xFF)[..],
        "padding depends on the buffer"
    );
    assert_eq!(read(&buf).unwrap().to_value().unwrap(), *v);
}

proptest! {
    #[test]
    fn values_roundtrip(v in value(false, false)) {
        check_roundtrip(&v);
    }

    #[test]

    fn values_with_attributes_and_null_roundtrip(v in value(true, true)) {
        check_roundtrip(&v);
    }

    #[test]
    fn payloads_placed_by_the_caller_complete_the_same_bytes(
        v in value(true, true),
        min in 0usize..200,
        fill in any::<u8>(),
    ) {
        let whole = write_into(&v, 0);
        let src = Source::Value(&v);
        let plan = src.plan(&WriteOptions::default()).unwrap();
        let payloads = plan.payloads(min).unwrap();
        let mut parts = vec![fill; plan.len()];
        prop_assert_eq!(plan.write_into_except_payloads(&mut parts, min).unwrap(), plan.len());
        let mut end = 0;
        for p in &payloads {
            prop_assert!(p.offset >= end, "payloads in region order, disjoint");
            prop_assert!(p.bytes.len() >= min.max(1));
            // The writer left these bytes alone.
            prop_assert!(parts[p.offset..p.offset + p.bytes.len()].iter().all(|&b| b == fill));
            parts[p.offset..p.offset + p.bytes.len()].copy_from_slice(p.bytes);
            end = p.offset + p.bytes.len();
        }
        prop_assert_eq!(&parts[..], &whole[..]);
    }

    #[test]
    fn borrowed_sources_write_the_same_bytes_as_values(
        d in proptest::collection::vec(any::<f64>(), 0..50),
        i in proptest::collection::vec(any::<i32>(), 0..50),
        r in proptest::collection::vec(any::<u8>(), 0..50),
        c in proptest::collection::vec(any::<[f64; 2]>(), 0..10),
        s in proptest::collection::vec(proptest::option::of("[a-z\u{e9}]{0,6}"), 0..10),
    ) {
        let opts = WriteOptions::default();
        let strs: Vec<Option<&str>> = s.iter().map(Option::as_deref).collect();
        let owned_strs = Value::new(Data::Character(strs.iter().map(|&x| RString::from(x)).collect()));
        let pairs: Vec<(Source<'_>, Value)> = vec![
            (Source::Double(&d), Value::double(d.clone())),
            (Source::Integer(&i), Value::integer(i.clone())),
            (Source::Logical(&i), Value::new(Data::Logical(i.clone()))),
            (Source::Raw(&r), Value::new(Data::Raw(r.clone()))),
            (Source::Complex(&c), Value::new(Data::Complex(c.clone()))),
            (Source::OptStrings(&strs), owned_strs.clone()),
            (
                Source::List(vec![(None, Source::Double(&d)), (None, Source::OptStrings(&strs))]),
                Value::list([Value::double(d.clone()), owned_strs.clone()]),
            ),
            (
                Source::List(vec![(Some("d"), Source::Double(&d)), (Some("s"), Source::OptStrings(&strs))]),
                Value::named_list([("d", Value::double(d.clone())), ("s", owned_strs.clone())]),
            ),
            (
                Source::DataFrame(vec![("x", Source::Double(&d)), ("y", Source::Double(&d))]),
                Value::data_frame([("x", Value::double(d.clone())), ("y", Value::double(d.clone()))], d.len()),
            ),
        ];
        for (src, val) in &pairs {
            let len = src.encoded_len(&opts).unwrap();
            prop_assert_eq!(len, encoded_len(val, &opts).unwrap());
            let mut a = AlignedBuf::from_bytes(&vec![0x5A; len]);
            src.write(&mut a, &opts).unwrap();
            prop_assert_eq!(&a[..], &write_into(val, 0)[..]);
            let mut b = AlignedBuf::zeroed(len);
            Source::Value(val).write(&mut b, &opts).unwrap();
            prop_assert_eq!(&a[..], &b[..]);
        }
    }
}

#[test]
fn strings_of_owned_str_slices_match_options() {
    let opts = WriteOptions::default();
    let a = ["x", "h\u{e9}"];
    let b = [Some("x"), Some("h\u{e9}")];
    let (mut x, mut y) = (vec![0; 200], vec![1; 200]);
    let n = Source::Strings(&a).write(&mut x, &opts).unwrap();
    assert_eq!(Source::OptStrings(&b).write(&mut y, &opts).unwrap(), n);
    assert_eq!(x[..n], y[..n]);
}

#[test]
fn the_named_list_form_of_r_4_6_reads_back() {
    use mori_format::rser::{AttrForm, SerializeOptions};
    let opts = WriteOptions {
        serialize: SerializeOptions {
            form: AttrForm::NamedList,
            r_version: 0x0004_0600,
        },
    };
    let df = Value::data_frame([("a", Value::double([1.0, 2.0]))], 2);
    let mut buf = AlignedBuf::zeroed(encoded_len(&df, &opts).unwrap());
    write(&df, &mut buf, &opts).unwrap();
    let pairlist_len = encoded_len(&df, &WriteOptions::default()).unwrap();
    assert!(
        buf.len() > pairlist_len,
        "the named-list blob is the larger form"
    );
    let back = read(&buf).unwrap().to_value().unwrap();
    assert_eq!(back.names().unwrap(), vec![Some("a")]);
    assert_eq!(
        back.attrs.get("class"),
        Some(&Value::character(["data.frame"]))
    );
    assert_eq!(back.data, df.data);
}

#[test]
fn attributed_sources_write_the_same_bytes_as_values() {
    let opts = WriteOptions::default();
    let codes = [1, 2, 1];
    let mut factor = Attributes::new();
    factor.set("levels", Value::character(["u", "v"]));
    factor.set("class", Value::character(["factor"]));
    let x = [0.5, 1.5, 2.5];
    let src = Source::DataFrame(vec![
        ("x", Source::Double(&x)),
        (
            "f",
            Source::Attributed(Box::new(Source::Integer(&codes)), &factor),
        ),
    ]);
    let val = Value::data_frame(
        [
            ("x", Value::double(x)),
            (
                "f",
                Value {
                    data: Data::Integer(codes.to_vec()),
                    attrs: factor.clone(),
                },
            ),
        ],
        3,
    );
    let mut a = AlignedBuf::zeroed(src.encoded_len(&opts).unwrap());
    src.write(&mut a, &opts).unwrap();
    assert_eq!(&a[..], &write_into(&val, 0)[..]);
    assert_eq!(read(&a).unwrap().to_value().unwrap(), val);

    // attributes set over a data frame's generated ones replace them in place
    let mut class = Attributes::new();
    class.set("class", Value::character(["tbl_df", "data.frame"]));
    let tibble = Source::Attributed(Box::new(src), &class);
    let mut b = AlignedBuf::zeroed(tibble.encoded_len(&opts).unwrap());
    tibble.write(&mut b, &opts).unwrap();
    let back = read(&b).unwrap().to_value().unwrap();
    let names: Vec<&str> = back.attrs.0.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["names", "class", "row.names"]);
    assert_eq!(
        back.attrs.get("class"),
        Some(&Value::character(["tbl_df", "data.frame"]))
    );
}
