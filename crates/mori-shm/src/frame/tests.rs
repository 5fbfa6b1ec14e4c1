use mori_format::Source;
use mori_format::value::{Value, is_na_real};

use crate::{Frame, FromShared, Shared, map_typed, share_data_frame, share_typed};

#[derive(Frame)]
struct Params {
    alpha: Vec<f64>,
    tags: Vec<String>,
}

#[derive(Frame)]
#[mori(data_frame)]
struct Table {
    x: Vec<f64>,
    n: Vec<i32>,
    flag: Vec<bool>,
    label: Vec<String>,
    maybe: Vec<Option<f64>>,
    count: Vec<Option<i32>>,
    ok: Vec<Option<bool>>,
    note: Vec<Option<String>>,
}

#[derive(Frame)]
struct Inputs {
    table: Table,
    params: Params,
    weights: Vec<f64>,
}

fn inputs() -> Inputs {
    Inputs {
        table: Table {
            x: vec![1.5, 2.5, -0.0],
            n: vec![1, 2, 3],
            flag: vec![true, false, true],
            label: vec!["a".into(), "é".into(), String::new()],
            maybe: vec![Some(1.0), None, Some(f64::NAN)],
            count: vec![None, Some(7), Some(-1)],
            ok: vec![Some(false), None, Some(true)],
            note: vec![None, Some("n".into()), None],
        },
        params: Params {
            alpha: vec![0.1],
            tags: vec!["t1".into(), "t2".into()],
        },
        weights: (0..1000).map(f64::from).collect(),
    }
}

fn id(shared: &Shared) -> String {
    shared
        .view()
        .identifier()
        .expect("a root has an identifier")
}

#[test]
fn a_derived_struct_is_one_region_read_back_typed_in_place() {
    let data = inputs();
    let shared = share_typed(&data).unwrap();
    let view: InputsView = map_typed(&id(&shared)).unwrap();
    let t = &view.table;
    assert_eq!(&t.x[..], &data.table.x[..]);
    assert_eq!(&t.n[..], &[1, 2, 3]);
    assert_eq!(
        t.flag.iter().collect::<Vec<_>>(),
        [Some(true), Some(false), Some(true)]
    );
    assert_eq!(
        t.label.iter().collect::<Vec<_>>(),
        [Some("a"), Some("é"), Some("")]
    );
    assert_eq!(t.maybe[0], 1.0);
    assert!(is_na_real(t.maybe[1]));
    assert!(
        t.maybe[2].is_nan() && !is_na_real(t.maybe[2]),
        "NaN stays NaN, not NA"
    );
    assert_eq!(&t.count[..], &[i32::MIN, 7, -1]);
    assert_eq!(
        t.ok.iter().collect::<Vec<_>>(),
        [Some(false), None, Some(true)]
    );
    assert_eq!(t.note.iter().collect::<Vec<_>>(), [None, Some("n"), None]);
    assert_eq!(&view.params.alpha[..], &[0.1]);
    assert_eq!(
        view.params.tags.iter().collect::<Vec<_>>(),
        [Some("t1"), Some("t2")]
    );
    assert_eq!(view.weights.len(), 1000);
    // In place: the column is a slice of the mapping, not a copy.
    let root = view.shared_view();
    let weights = root.get_named("weights").unwrap().unwrap();
    assert_eq!(view.weights.as_ptr(), weights.as_f64().unwrap().as_ptr());
    drop(shared);
}

#[test]
fn the_data_frame_attribute_writes_what_r_writes_for_the_same_frame() {
    #[derive(Frame)]
    #[mori(data_frame)]
    struct Df {
        a: Vec<Option<f64>>,
        b: Vec<Option<String>>,
        l: Vec<Option<bool>>,
    }
    let df = Df {
        a: vec![Some(1.5), Some(2.5), None],
        b: vec![Some("x".into()), None, Some("z".into())],
        l: vec![Some(true), None, Some(false)],
    };
    let derived = share_typed(&df).unwrap();
    // The same frame through the writer R's fixtures are checked against (mori-format's
    // writer_reproduces_r_bytes_for_every_fixture): byte for byte the same region.
    let direct = share_data_frame(vec![
        (
            "a",
            Source::Double(&[1.5, 2.5, mori_format::value::NA_REAL]),
        ),
        ("b", Source::OptStrings(&[Some("x"), None, Some("z")])),
        ("l", Source::Logical(&[1, i32::MIN, 0])),
    ])
    .unwrap();
    let file = |s: &Shared| std::fs::read(format!("/dev/shm{}", s.name())).unwrap();
    assert_eq!(file(&derived), file(&direct));
    let value = derived.to_value().unwrap();
    let class = value.attrs.get("class").cloned();
    assert_eq!(class, Some(Value::character(["data.frame"])));
}

#[test]
fn a_frame_r_wrote_reads_through_a_view_of_some_of_its_columns() {
    // data.frame(a = c(1.5, 2.5, NA), b = c("x", NA, "z"), f = factor(..), l = c(TRUE, NA, FALSE))
    // as R's mori 0.2.0 wrote it.
    let bytes = include_bytes!("../../../mori-format/tests/fixtures/r-mori-0.2.0/data_frame.bin");
    let (mapping, _owner) = crate::region::create(bytes.len(), |r| {
        r.bytes_mut()?.copy_from_slice(bytes);
        Ok(())
    })
    .unwrap();
    #[allow(dead_code)] // Only its view is used.
    #[derive(Frame)]
    #[mori(data_frame)]
    struct Seen {
        a: Vec<Option<f64>>,
        b: Vec<Option<String>>,
        l: Vec<Option<bool>>,
    }
    let view: SeenView = map_typed(mapping.name()).unwrap();
    assert_eq!(&view.a[..2], &[1.5, 2.5]);
    assert!(is_na_real(view.a[2]));
    assert_eq!(
        view.b.iter().collect::<Vec<_>>(),
        [Some("x"), None, Some("z")]
    );
    assert_eq!(
        view.l.iter().collect::<Vec<_>>(),
        [Some(true), None, Some(false)]
    );
}

#[test]
fn a_view_of_another_shape_is_a_typed_error() {
    let shared = share_typed(&inputs()).unwrap();
    // Params expects `alpha` and `tags`, which Inputs does not have.
    let err = map_typed::<ParamsView>(&id(&shared)).unwrap_err();
    assert!(matches!(err, crate::Error::WrongType { .. }), "{err}");
    let column = share_typed(&vec![1.0]).unwrap();
    assert!(map_typed::<InputsView>(&id(&column)).is_err());
    // A column of the wrong type inside.
    #[allow(dead_code)] // Only its view is used.
    #[derive(Frame)]
    struct WrongWeights {
        weights: Vec<String>,
    }
    assert!(matches!(
        map_typed::<WrongWeightsView>(&id(&shared)),
        Err(crate::Error::WrongType { .. })
    ));
}

#[test]
fn a_view_travels_as_its_name_and_is_checked_on_arrival() {
    let shared = share_typed(&inputs()).unwrap();
    let view: InputsView = map_typed(&id(&shared)).unwrap();
    let json = serde_json::to_string(&view.table).unwrap();
    assert!(json.len() < 64, "a name, not the data: {json}");
    let back: TableView = serde_json::from_str(&json).unwrap();
    assert_eq!(&back.x[..], &[1.5, 2.5, -0.0]);
    assert!(serde_json::from_str::<ParamsView>(&json).is_err());
}
