//! Shared by the native integration tests: generated MAT fixtures and the real recordings.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Writes the MAT fixtures once per test binary (Python + scipy, installed by the test
/// command) and returns their folder.
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("mat-fixtures-{}", std::process::id()));
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_mat_fixtures.py");
        let status = std::process::Command::new("python3")
            .arg(&script)
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("python3 must be installed to generate the MAT fixtures");
        assert!(
            status.success(),
            "{} failed: is scipy installed?",
            script.display()
        );
        dir
    })
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `../shared/data/kohn-v1` beside the project, or None (with a printed notice) where absent.
pub fn kohn_session(file: &str) -> Option<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/kohn-v1")
        .join(file);
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(_) => {
            eprintln!(
                "NOTICE: {} is absent; skipping the check on real recordings",
                path.display()
            );
            None
        }
    }
}

pub const SESSION_07: &str = "07mean50ms_smallim_d2_crop.mat";

/// The bundled demo session (`data/simulated-v1.mat`).
pub fn demo_dataset() -> v1_predictor::data::Dataset {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/simulated-v1.mat"
    ))
    .unwrap();
    v1_predictor::data::read_mat("simulated-v1.mat", &bytes).unwrap()
}
