//! Data: the seed's recording files, their validation, and the train / eval / early-stop split.
//!
//! Everything here is plain Rust (no tensors), so the page, the worker and the native runner
//! share one loader and one set of error messages.

mod dataset;
mod mat;
pub mod simulate;
mod split;

pub use dataset::{Dataset, DatasetSummary, combine};
pub use mat::{DataError, FileError, read_mat};
pub use split::{Split, split_sizes};

/// Reads one or several `.mat` files (name, bytes) and combines them into one dataset.
///
/// Several files must hold the same images: their neurons are concatenated, as the seed's
/// `DataLoader` does for sessions recorded with one stimulus set.
pub fn load_files<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<Dataset, FileError> {
    let mut datasets = Vec::new();
    for (name, bytes) in files {
        datasets.push(read_mat(name, bytes)?);
    }
    combine(datasets)
}
