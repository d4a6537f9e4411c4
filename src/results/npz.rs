//! `.npz` files as `numpy.savez` writes them: one `.npy` per array in an uncompressed zip,
//! readable with `numpy.load(path)` and no `allow_pickle`.

use std::io::{Cursor, Write};

use npyz::WriterBuilder;
use zip::write::SimpleFileOptions;

use super::ResultsError;

pub struct NpzBuilder {
    zip: zip::ZipWriter<Cursor<Vec<u8>>>,
}

impl Default for NpzBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl NpzBuilder {
    pub fn new() -> Self {
        Self {
            zip: zip::ZipWriter::new(Cursor::new(Vec::new())),
        }
    }

    fn npy<T: npyz::AutoSerialize + Copy>(
        &mut self,
        name: &str,
        shape: &[usize],
        values: &[T],
    ) -> Result<&mut Self, ResultsError> {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len(), "{name}");
        let mut bytes = Vec::new();
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let mut writer = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape)
            .writer(&mut bytes)
            .begin_nd()?;
        writer.extend(values.iter().cloned())?;
        writer.finish()?;
        self.entry(name, &bytes)
    }

    fn entry(&mut self, name: &str, npy: &[u8]) -> Result<&mut Self, ResultsError> {
        let options =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        self.zip
            .start_file(format!("{name}.npy"), options)
            .map_err(|e| ResultsError::Write(e.to_string()))?;
        self.zip.write_all(npy)?;
        Ok(self)
    }

    pub fn f64s(
        &mut self,
        name: &str,
        shape: &[usize],
        values: &[f64],
    ) -> Result<&mut Self, ResultsError> {
        self.npy(name, shape, values)
    }

    pub fn f32s(
        &mut self,
        name: &str,
        shape: &[usize],
        values: &[f32],
    ) -> Result<&mut Self, ResultsError> {
        self.npy(name, shape, values)
    }

    /// A 1-d int64 array (image indices, steps).
    pub fn indices(&mut self, name: &str, values: &[usize]) -> Result<&mut Self, ResultsError> {
        let values: Vec<i64> = values.iter().map(|&v| v as i64).collect();
        self.npy(name, &[values.len()], &values)
    }

    /// A 2-d int64 array, one row per list (all of one length).
    pub fn index_table(
        &mut self,
        name: &str,
        rows: &[Vec<usize>],
    ) -> Result<&mut Self, ResultsError> {
        let width = rows.first().map_or(0, Vec::len);
        if rows.iter().any(|row| row.len() != width) {
            return Err(ResultsError::Write(format!(
                "{name}: rows of different lengths"
            )));
        }
        let values: Vec<i64> = rows.iter().flatten().map(|&v| v as i64).collect();
        self.npy(name, &[rows.len(), width], &values)
    }

    pub fn scalar_f64(&mut self, name: &str, value: f64) -> Result<&mut Self, ResultsError> {
        self.npy(name, &[], &[value])
    }

    pub fn scalar_i64(&mut self, name: &str, value: i64) -> Result<&mut Self, ResultsError> {
        self.npy(name, &[], &[value])
    }

    /// A 0-d unicode array (numpy `<U`): `str(npz[name])` gives the text back.
    pub fn text(&mut self, name: &str, text: &str) -> Result<&mut Self, ResultsError> {
        let chars = text.chars().count().max(1);
        let dtype = npyz::DType::Plain(
            format!("<U{chars}")
                .parse()
                .map_err(|e| ResultsError::Write(format!("{e:?}")))?,
        );
        let mut bytes = Vec::new();
        let mut writer = npyz::WriteOptions::<str>::new()
            .dtype(dtype)
            .shape(&[])
            .writer(&mut bytes)
            .begin_nd()?;
        writer.push(text)?;
        writer.finish()?;
        self.entry(name, &bytes)
    }

    pub fn finish(self) -> Result<Vec<u8>, ResultsError> {
        Ok(self
            .zip
            .finish()
            .map_err(|e| ResultsError::Write(e.to_string()))?
            .into_inner())
    }
}
