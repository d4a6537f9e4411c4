//! The MAT loader on files written by scipy, on every kind of bad file, and on the real
//! recordings (memory order and image orientation).
#![cfg(not(target_arch = "wasm32"))] // native tests: they read files and run Python

mod common;

use common::{SESSION_07, fixture, fixtures, kohn_session};
use v1_predictor::data::{DataError, load_files, read_mat};

fn expected() -> serde_json::Value {
    serde_json::from_slice(&fixture("expected.json")).unwrap()
}

fn error_of(name: &str) -> DataError {
    read_mat(name, &fixture(name)).expect_err(name).error
}

#[test]
fn reads_compressed_uncompressed_and_other_numeric_classes_in_numpy_order() {
    let want = expected();
    for name in [
        "good_uncompressed.mat",
        "good_compressed.mat",
        "good_other_classes.mat", // int16 / single, plus text, struct, cell and int32 extras
        "good_int32_images.mat",
        "good_big_endian.mat",
    ] {
        let d = read_mat(name, &fixture(name)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (d.n_images, d.height, d.width, d.n_neurons),
            (20, 9, 11, 3),
            "{name}"
        );
        for p in want["probes"].as_array().unwrap() {
            let [i, r, c, v] = [0, 1, 2, 3].map(|k| p[k].as_u64().unwrap() as usize);
            assert_eq!(
                d.image(i)[r * d.width + c],
                v as f32,
                "{name} images[{i},{r},{c}]"
            );
        }
        for p in want["activity_probes"].as_array().unwrap() {
            let (i, j, v) = (
                p[0].as_u64().unwrap() as usize,
                p[1].as_u64().unwrap() as usize,
                p[2].as_f64().unwrap(),
            );
            assert!(
                (f64::from(d.rate(i, j)) - v).abs() < 1e-6,
                "{name} activity[{i},{j}]"
            );
        }
    }
}

#[test]
fn files_of_the_same_images_concatenate_their_neurons() {
    let (a, b) = (
        fixture("good_compressed.mat"),
        fixture("same_images_more_neurons.mat"),
    );
    let d = load_files([("a.mat", &a[..]), ("b.mat", &b[..])]).unwrap();
    assert_eq!(d.n_neurons, 5);
    assert_eq!(d.sources, vec!["a.mat", "b.mat"]);
    let want = expected();
    for p in want["activity_more"].as_array().unwrap() {
        let (i, j, v) = (
            p[0].as_u64().unwrap() as usize,
            p[1].as_u64().unwrap() as usize,
            p[2].as_f64().unwrap(),
        );
        assert!((f64::from(d.rate(i, 3 + j)) - v).abs() < 1e-6);
    }
    let first = read_mat("a.mat", &a).unwrap();
    assert_eq!(d.rate(7, 2), first.rate(7, 2));
}

#[test]
fn files_of_different_images_are_refused() {
    let (a, b) = (
        fixture("good_compressed.mat"),
        fixture("different_images.mat"),
    );
    let err = load_files([("a.mat", &a[..]), ("b.mat", &b[..])]).unwrap_err();
    assert_eq!(err.file, "b.mat");
    assert!(matches!(err.error, DataError::DifferentImages { .. }));
    assert!(err.to_string().contains("same images"), "{err}");
}

#[test]
fn every_bad_file_gets_its_own_clear_error() {
    assert_eq!(error_of("empty.mat"), DataError::Empty);
    assert_eq!(error_of("not_a_mat.mat"), DataError::NotMat);
    assert_eq!(error_of("v73.mat"), DataError::Version73);
    assert!(error_of("v73.mat").to_string().contains("-v7"));
    assert_eq!(error_of("v4.mat"), DataError::Version4);
    assert!(
        matches!(error_of("truncated.mat"), DataError::Truncated { .. }),
        "{}",
        error_of("truncated.mat")
    );
    assert!(matches!(
        error_of("header_only.mat"),
        DataError::Truncated { needed: 128, .. }
    ));
    match error_of("missing_activity.mat") {
        DataError::MissingVariable { name, found } => {
            assert_eq!(name, "activity");
            assert!(found.contains("rates"), "{found}");
        }
        other => panic!("{other}"),
    }
    assert!(matches!(
        error_of("count_mismatch.mat"),
        DataError::CountMismatch {
            images: 20,
            rows: 19,
            ..
        }
    ));
    let transposed = error_of("transposed.mat");
    assert!(
        transposed.to_string().contains("transposed"),
        "{transposed}"
    );
    assert!(matches!(
        error_of("images_2d.mat"),
        DataError::WrongDimensions { name: "images", .. }
    ));
    match error_of("nan_activity.mat") {
        DataError::NotFinite { name, count, first } => {
            assert_eq!((name, count), ("activity", 2));
            assert_eq!(first, "activity[4, 1]");
        }
        other => panic!("{other}"),
    }
    match error_of("inf_images.mat") {
        DataError::NotFinite { name, first, .. } => {
            assert_eq!((name, first.as_str()), ("images", "images[2, 3, 5]"))
        }
        other => panic!("{other}"),
    }
    assert!(matches!(
        error_of("empty_images.mat"),
        DataError::EmptyVariable { name: "images", .. }
    ));
    assert_eq!(
        error_of("complex_activity.mat"),
        DataError::Complex { name: "activity" }
    );
    assert_eq!(
        error_of("images_are_text.mat"),
        DataError::NotNumeric {
            name: "images",
            what: "text (a char array)"
        }
    );
}

#[test]
fn errors_name_the_file_and_never_panic_on_garbage() {
    let err = read_mat("lecture.mat", b"MATLAB 5.0 MAT-file junk").unwrap_err();
    assert!(err.to_string().starts_with("lecture.mat: "), "{err}");
    // Every prefix of a good file is refused cleanly, never a panic.
    let good = fixture("good_compressed.mat");
    for cut in (0..good.len()).step_by(37) {
        assert!(
            read_mat("cut.mat", &good[..cut]).is_err(),
            "prefix of {cut} bytes accepted"
        );
    }
    let _ = fixtures();
}

#[test]
fn session_07_reads_with_the_right_memory_order_and_orientation() {
    let Some(bytes) = kohn_session(SESSION_07) else {
        return;
    };
    let d = read_mat(SESSION_07, &bytes).unwrap();
    assert_eq!(
        (d.n_images, d.height, d.width, d.n_neurons),
        (270, 33, 33, 36)
    );
    let px = |i: usize, r: usize, c: usize| d.image(i)[r * 33 + c];
    assert_eq!(px(5, 10, 20), 214.0);
    assert_eq!(px(5, 20, 10), 181.0);
    assert_eq!(px(0, 0, 0), 116.0);
    assert_eq!(d.rate(0, 0), 2.65);
    assert_eq!(d.rate(3, 7), 1.0);
    assert_eq!(d.rate(269, 35), 0.45);
    assert_eq!(d.image(5).iter().map(|&v| v as f64).sum::<f64>(), 157810.0);
    let all: Vec<usize> = (0..270).collect();
    assert!((d.mean_rates(&all)[7] - 0.8981).abs() < 5e-5);
}

/// A level-5 MAT file (little-endian) whose variables are each one compressed element: a
/// miMATRIX with the given class, dimensions and name, followed by `data_len` zero bytes of
/// data declared as uint8 (miUINT8) or double (miDOUBLE).
fn compressed_mat(variables: &[(&str, u32, &[usize], u32, usize)]) -> Vec<u8> {
    use std::io::Write;
    let element = |data_type: u32, payload: &[u8]| {
        let mut out = data_type.to_le_bytes().to_vec();
        out.extend((payload.len() as u32).to_le_bytes());
        out.extend(payload);
        out.resize(out.len().next_multiple_of(8), 0);
        out
    };
    let mut file = b"MATLAB 5.0 MAT-file, crafted".to_vec();
    file.resize(116, b' ');
    file.extend([0u8; 8]);
    file.extend(0x0100u16.to_le_bytes());
    file.extend(b"IM");
    for &(name, class, dims, data_type, data_len) in variables {
        let flags: Vec<u8> = [class, 0u32].iter().flat_map(|v| v.to_le_bytes()).collect();
        let dims: Vec<u8> = dims
            .iter()
            .flat_map(|&d| (d as i32).to_le_bytes())
            .collect();
        let mut payload = element(6, &flags);
        payload.extend(element(5, &dims));
        payload.extend(element(1, name.as_bytes()));
        payload.extend(element(data_type, &vec![0u8; data_len]));
        let matrix = element(14, &payload);
        let mut encoder = libflate::zlib::Encoder::new(Vec::new()).unwrap();
        encoder.write_all(&matrix).unwrap();
        let compressed = encoder.finish().into_result().unwrap();
        file.extend(15u32.to_le_bytes());
        file.extend((compressed.len() as u32).to_le_bytes());
        file.extend(compressed);
    }
    file
}

#[test]
fn a_variable_that_declares_billions_of_values_is_refused_before_it_is_inflated() {
    // 3 × 10⁹ pixels declared; 20 MB of zeros actually compressed (a few kB on disk).
    let bomb = compressed_mat(&[("images", 9, &[3000, 1000, 1000], 2, 20_000_000)]);
    assert!(bomb.len() < 100_000, "{} bytes", bomb.len());
    let error = read_mat("bomb.mat", &bomb).unwrap_err();
    match &error.error {
        DataError::TooLarge { name, values, .. } => {
            assert_eq!(name, "images");
            assert_eq!(*values, 3_000_000_000);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains("bomb.mat") && message.contains("[3000 × 1000 × 1000]"),
        "{message}"
    );
}

#[test]
fn an_activity_whose_rows_disagree_with_the_images_is_refused_before_it_is_read() {
    let file = compressed_mat(&[
        ("images", 9, &[270, 33, 33], 2, 270 * 33 * 33),
        // 4 million doubles declared (under the size limit), 100 000 rows: not 270.
        ("activity", 6, &[100_000, 40], 9, 64),
    ]);
    match read_mat("rows.mat", &file).unwrap_err().error {
        DataError::CountMismatch { images, rows, .. } => assert_eq!((images, rows), (270, 100_000)),
        other => panic!("expected CountMismatch, got {other:?}"),
    }
}
