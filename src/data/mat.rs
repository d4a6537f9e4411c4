//! MATLAB level-5 MAT files, as the seed's recordings are stored.
//!
//! `matfile` parses the numeric arrays. Around it we do what it cannot: recognise v7.3
//! (HDF5), v4 and truncated files, so that a teacher reads what is wrong with the file
//! instead of "parse error"; and hand it only the two variables we need, so that any other
//! variable in the file (strings, structs, cells, objects) can never break loading.
//! matfile 0.5 also refuses `int32` arrays stored as int32 (its class table maps int32 to
//! uint32); we relabel such arrays as double, which it reads exactly.

use std::fmt;

use matfile::{MatFile, NumericData};

use super::Dataset;

const HEADER_LEN: usize = 128;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MX_DOUBLE_CLASS: u8 = 6;
const MX_INT32_CLASS: u8 = 12;
const WANTED: [&str; 2] = ["images", "activity"];
const HDF5_SIGNATURE: &[u8] = b"\x89HDF\r\n\x1a\n";
/// The most values one variable may declare: 50 million (400 MB once read as doubles; e.g.
/// 46 000 images of 33×33). Checked against the declared dimensions before a compressed
/// variable is inflated, so that a small crafted file cannot make the reader allocate
/// gigabytes.
pub const MAX_VALUES: usize = 50_000_000;
/// Bytes of a compressed variable inflated to read its header (flags, dimensions, name).
const HEADER_PEEK: u64 = 4096;

/// What is wrong with a file, in words a non-programmer can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DataError {
    #[error("the file is empty (0 bytes)")]
    Empty,
    #[error(
        "this is not a MATLAB .mat file (it does not start with a MAT-file header); \
         expected a file with the variables `images` and `activity`"
    )]
    NotMat,
    #[error(
        "this is a MATLAB v7.3 file (HDF5 inside), which this tool cannot read; \
         in MATLAB, re-save it as version 7: save('file.mat', 'images', 'activity', '-v7')"
    )]
    Version73,
    #[error(
        "this is an old MATLAB v4 file, which this tool cannot read; re-save it as version 7 \
         (MATLAB: save('file.mat', 'images', 'activity', '-v7'); \
         Python: scipy.io.savemat('file.mat', data, format='5'))"
    )]
    Version4,
    #[error(
        "the file is cut short: it ends at byte {len}, but its data goes on to byte {needed} \
         (an incomplete download or copy?)"
    )]
    Truncated { len: usize, needed: usize },
    #[error("the file is damaged and could not be read ({0})")]
    Corrupt(String),
    #[error("the file has no variable named `{name}` (it has: {found})")]
    MissingVariable { name: &'static str, found: String },
    #[error("`{name}` is {what}, not a numeric array")]
    NotNumeric {
        name: &'static str,
        what: &'static str,
    },
    #[error("`{name}` holds complex numbers; expected real values")]
    Complex { name: &'static str },
    #[error("`{name}` must be {expected}, but it is {dims}")]
    WrongDimensions {
        name: &'static str,
        expected: &'static str,
        dims: String,
    },
    #[error("`{name}` is empty ({dims})")]
    EmptyVariable { name: &'static str, dims: String },
    #[error(
        "`images` holds {images} images but `activity` has {rows} rows: \
         there must be one row of activity per image{hint}"
    )]
    CountMismatch {
        images: usize,
        rows: usize,
        hint: &'static str,
    },
    #[error(
        "`{name}` declares {dims} = {} values, more than this reader accepts ({} million); \
         it was not read", grouped(*values), limit / 1_000_000
    )]
    TooLarge {
        name: String,
        dims: String,
        values: u128,
        limit: usize,
    },
    #[error("`{name}` contains {count} value(s) that are NaN or infinite (the first at {first})")]
    NotFinite {
        name: &'static str,
        count: usize,
        first: String,
    },
    #[error(
        "its images differ from those of {first}: only recordings of the same images can be \
         combined"
    )]
    DifferentImages { first: String },
    #[error("no file was given")]
    NoFiles,
}

/// A [`DataError`] with the name of the file it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct FileError {
    pub file: String,
    pub error: DataError,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.file.is_empty() {
            write!(f, "{}", self.error)
        } else {
            write!(f, "{}: {}", self.file, self.error)
        }
    }
}

impl std::error::Error for FileError {}

/// Reads `images` [n, h, w] and `activity` [n, neurons] from a MAT file's bytes.
pub fn read_mat(file_name: &str, bytes: &[u8]) -> Result<Dataset, FileError> {
    let with_name = |error| FileError {
        file: file_name.to_string(),
        error,
    };
    let endian = check_container(bytes).map_err(with_name)?;
    let (wanted, all_names) = select_variables(bytes, endian).map_err(with_name)?;
    let mat =
        MatFile::parse(&wanted[..]).map_err(|e| with_name(DataError::Corrupt(e.to_string())))?;

    let images = variable(&mat, "images", &all_names).map_err(with_name)?;
    let activity = variable(&mat, "activity", &all_names).map_err(with_name)?;
    let [n_images, height, width] = match images.size()[..] {
        [n, h, w] => [n, h, w],
        ref dims => {
            return Err(with_name(DataError::WrongDimensions {
                name: "images",
                expected: "3-D [images, height, width]",
                dims: dims_text(dims),
            }));
        }
    };
    let [rows, n_neurons] = match activity.size()[..] {
        [r, c] => [r, c],
        ref dims => {
            return Err(with_name(DataError::WrongDimensions {
                name: "activity",
                expected: "2-D [images, neurons]",
                dims: dims_text(dims),
            }));
        }
    };
    for (name, dims) in [("images", images.size()), ("activity", activity.size())] {
        if dims.contains(&0) {
            return Err(with_name(DataError::EmptyVariable {
                name,
                dims: dims_text(dims),
            }));
        }
    }
    if rows != n_images {
        let hint = if n_neurons == n_images {
            " (`activity` looks transposed: store it as [images, neurons])"
        } else {
            ""
        };
        return Err(with_name(DataError::CountMismatch {
            images: n_images,
            rows,
            hint,
        }));
    }

    let images_cm = real_values(images.data(), "images").map_err(with_name)?;
    let activity_cm = real_values(activity.data(), "activity").map_err(with_name)?;
    check_finite("images", &images_cm, images.size()).map_err(with_name)?;
    check_finite("activity", &activity_cm, activity.size()).map_err(with_name)?;

    Ok(Dataset {
        sources: vec![file_name.to_string()],
        n_images,
        height,
        width,
        n_neurons,
        images: column_major_to_row_major(&images_cm, images.size()),
        activity: column_major_to_row_major(&activity_cm, activity.size()),
    })
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u32(self, bytes: &[u8], at: usize) -> Option<u32> {
        let word: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(match self {
            Endian::Little => u32::from_le_bytes(word),
            Endian::Big => u32::from_be_bytes(word),
        })
    }
}

/// Recognises what `matfile` would only call a parse error: not a MAT file, v7.3, v4,
/// a truncated file. Returns the file's byte order.
fn check_container(bytes: &[u8]) -> Result<Endian, DataError> {
    if bytes.is_empty() {
        return Err(DataError::Empty);
    }
    if bytes.starts_with(HDF5_SIGNATURE) {
        return Err(DataError::Version73);
    }
    if !bytes.starts_with(b"MATLAB") {
        return Err(if looks_like_v4(bytes) {
            DataError::Version4
        } else {
            DataError::NotMat
        });
    }
    if bytes.starts_with(b"MATLAB 7.3") || bytes.get(512..520) == Some(HDF5_SIGNATURE) {
        return Err(DataError::Version73);
    }
    if bytes.len() < HEADER_LEN {
        return Err(DataError::Truncated {
            len: bytes.len(),
            needed: HEADER_LEN,
        });
    }
    let endian = match &bytes[126..128] {
        b"IM" => Endian::Little,
        b"MI" => Endian::Big,
        _ => return Err(DataError::NotMat),
    };
    let read_u32 = |at: usize| endian.u32(bytes, at).expect("bounds checked");
    // Walk the top-level data elements: each declares its length, so a cut file shows itself.
    let mut offset = HEADER_LEN;
    while offset < bytes.len() {
        if bytes.len() - offset < 8 {
            return Err(DataError::Truncated {
                len: bytes.len(),
                needed: offset + 8,
            });
        }
        let data_type = read_u32(offset);
        let n_bytes = read_u32(offset + 4) as usize;
        let mut end = offset + 8 + n_bytes;
        if data_type != MI_COMPRESSED {
            end = end.next_multiple_of(8);
        }
        if end > bytes.len() {
            // Uncompressed elements may omit the final padding.
            if data_type == MI_COMPRESSED || offset + 8 + n_bytes > bytes.len() {
                return Err(DataError::Truncated {
                    len: bytes.len(),
                    needed: offset + 8 + n_bytes,
                });
            }
        }
        offset = end;
    }
    Ok(endian)
}

/// Top-level elements of a (checked) level-5 file: (type, payload).
fn elements(bytes: &[u8], endian: Endian) -> impl Iterator<Item = (u32, &[u8])> {
    let mut offset = HEADER_LEN;
    std::iter::from_fn(move || {
        let data_type = endian.u32(bytes, offset)?;
        let n_bytes = endian.u32(bytes, offset + 4)? as usize;
        let payload = bytes.get(offset + 8..(offset + 8 + n_bytes).min(bytes.len()))?;
        offset += 8 + n_bytes;
        if data_type != MI_COMPRESSED {
            offset = offset.next_multiple_of(8);
        }
        Some((data_type, payload))
    })
}

/// A new file holding only `images` and `activity` (decompressed), with int32 arrays
/// relabelled as double for matfile; and the names of every variable, for messages.
fn select_variables(bytes: &[u8], endian: Endian) -> Result<(Vec<u8>, Vec<String>), DataError> {
    let mut out = bytes[..HEADER_LEN].to_vec();
    let mut names = Vec::new();
    // The first wanted variable's first dimension (its image count), to refuse a second
    // one that disagrees before reading it.
    let mut first_seen: Option<(&'static str, Vec<usize>)> = None;
    for (data_type, payload) in elements(bytes, endian) {
        let inflated;
        let (data_type, payload) = match data_type {
            MI_COMPRESSED => {
                // Its header first: an unwanted or oversized variable is never inflated.
                let peek = inflate(payload, Some(HEADER_PEEK))?;
                let inner_type = endian.u32(&peek, 0).unwrap_or(0);
                let n = endian.u32(&peek, 4).unwrap_or(0) as usize;
                let Some(header) = MatrixHeader::parse(peek.get(8..).unwrap_or(&[]), endian) else {
                    continue;
                };
                if inner_type != MI_MATRIX {
                    continue;
                }
                names.push(header.name.clone());
                if !WANTED.contains(&header.name.as_str()) {
                    continue;
                }
                check_declared_size(&header, &mut first_seen)?;
                // At most what the element declares, however long the stream runs on.
                inflated = inflate(payload, Some(8 + n as u64))?;
                names.pop();
                (inner_type, inflated.get(8..8 + n).unwrap_or(&[]))
            }
            other => (other, payload),
        };
        if data_type != MI_MATRIX {
            continue;
        }
        let Some(header) = MatrixHeader::parse(payload, endian) else {
            continue;
        };
        names.push(header.name.clone());
        let Some(&wanted) = WANTED.iter().find(|w| **w == header.name) else {
            continue;
        };
        check_declared_size(&header, &mut first_seen)?;
        if let Some(what) = non_numeric_class(header.class) {
            return Err(DataError::NotNumeric { name: wanted, what });
        }
        let mut payload = payload.to_vec();
        if header.class == MX_INT32_CLASS {
            payload[header.class_byte] = MX_DOUBLE_CLASS;
        }
        let tag = match endian {
            Endian::Little => [
                MI_MATRIX.to_le_bytes(),
                (payload.len() as u32).to_le_bytes(),
            ],
            Endian::Big => [
                MI_MATRIX.to_be_bytes(),
                (payload.len() as u32).to_be_bytes(),
            ],
        };
        out.extend(tag.concat());
        out.extend(&payload);
        out.resize(out.len().next_multiple_of(8), 0);
    }
    Ok((out, names))
}

/// Inflates a compressed element, at most `limit` bytes of it.
fn inflate(payload: &[u8], limit: Option<u64>) -> Result<Vec<u8>, DataError> {
    use std::io::Read;
    let corrupt = |e: std::io::Error| DataError::Corrupt(format!("a compressed variable: {e}"));
    let decoder = libflate::zlib::Decoder::new(payload).map_err(corrupt)?;
    let mut out = Vec::new();
    match limit {
        Some(limit) => decoder.take(limit).read_to_end(&mut out),
        None => {
            let mut d = decoder;
            d.read_to_end(&mut out)
        }
    }
    .map_err(corrupt)?;
    Ok(out)
}

/// Refuses a wanted variable whose declared dimensions hold more than [`MAX_VALUES`], or
/// whose first dimension (images) disagrees with the other wanted variable's — before any
/// of its values are read.
fn check_declared_size(
    header: &MatrixHeader,
    first_seen: &mut Option<(&'static str, Vec<usize>)>,
) -> Result<(), DataError> {
    let Some(&name) = WANTED.iter().find(|w| **w == header.name) else {
        return Ok(());
    };
    let values: u128 = header.dims.iter().map(|&d| d as u128).product();
    if values > MAX_VALUES as u128 {
        return Err(DataError::TooLarge {
            name: name.to_string(),
            dims: dims_text(&header.dims),
            values,
            limit: MAX_VALUES,
        });
    }
    match first_seen {
        None => *first_seen = Some((name, header.dims.clone())),
        Some((other, other_dims)) if *other != name => {
            let (images, activity) = if name == "images" {
                (&header.dims, &*other_dims)
            } else {
                (&*other_dims, &header.dims)
            };
            let n_images = images.first().copied().unwrap_or(0);
            let rows = activity.first().copied().unwrap_or(0);
            if n_images != rows {
                let hint = if activity.get(1) == Some(&n_images) {
                    " (`activity` looks transposed: store it as [images, neurons])"
                } else {
                    ""
                };
                return Err(DataError::CountMismatch {
                    images: n_images,
                    rows,
                    hint,
                });
            }
        }
        Some(_) => {}
    }
    Ok(())
}

/// The start of a miMATRIX payload: array flags (class), dimensions, name.
struct MatrixHeader {
    class: u8,
    /// Where the class byte sits in the payload (depends on byte order).
    class_byte: usize,
    dims: Vec<usize>,
    name: String,
}

impl MatrixHeader {
    fn parse(payload: &[u8], endian: Endian) -> Option<Self> {
        // Array flags: tag (8 bytes) + u32 flags whose low byte is the class + u32 nzmax.
        let flags = endian.u32(payload, 8)?;
        let class_byte = if endian == Endian::Little { 8 } else { 11 };
        // Dimensions: a long-format miINT32 element, padded to 8 bytes.
        let dims_len = endian.u32(payload, 20)? as usize;
        let dims = (0..dims_len / 4)
            .map(|i| endian.u32(payload, 24 + 4 * i).map(|d| d as i32 as usize))
            .collect::<Option<Vec<usize>>>()?;
        let name_at = 24 + dims_len.next_multiple_of(8);
        let name_tag = endian.u32(payload, name_at)?;
        let name = if name_tag >> 16 != 0 {
            // Small element format: length in the upper half, data in the next 4 bytes.
            let len = (name_tag >> 16) as usize;
            payload.get(name_at + 4..name_at + 4 + len)?
        } else {
            let len = endian.u32(payload, name_at + 4)? as usize;
            payload.get(name_at + 8..name_at + 8 + len)?
        };
        Some(Self {
            class: (flags & 0xff) as u8,
            class_byte,
            dims,
            name: String::from_utf8_lossy(name).into_owned(),
        })
    }
}

fn non_numeric_class(class: u8) -> Option<&'static str> {
    match class {
        6..=15 => None,
        1 => Some("a cell array"),
        2 => Some("a struct"),
        3 => Some("an object"),
        4 => Some("text (a char array)"),
        5 => Some("a sparse matrix"),
        _ => Some("of an unknown MATLAB class"),
    }
}

/// A v4 file starts straight with a matrix header: type code MOPT < 5000, rows, columns,
/// imaginary flag, name length; then the name, NUL-terminated.
fn looks_like_v4(bytes: &[u8]) -> bool {
    if bytes.len() < 20 {
        return false;
    }
    let word = |at: usize, le: bool| {
        let w: [u8; 4] = bytes[at..at + 4].try_into().expect("4 bytes");
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    [true, false].into_iter().any(|le| {
        let (mopt, imagf, name_len) = (word(0, le), word(12, le), word(16, le) as usize);
        mopt < 5000
            && imagf <= 1
            && (2..=64).contains(&name_len)
            && bytes.len() >= 20 + name_len
            && bytes[20 + name_len - 1] == 0
            && bytes[20..20 + name_len - 1]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
    })
}

fn variable<'m>(
    mat: &'m MatFile,
    name: &'static str,
    all_names: &[String],
) -> Result<&'m matfile::Array, DataError> {
    mat.find_by_name(name)
        .ok_or_else(|| DataError::MissingVariable {
            name,
            found: if all_names.is_empty() {
                "no variables".to_string()
            } else {
                all_names.join(", ")
            },
        })
}

fn real_values(data: &NumericData, name: &'static str) -> Result<Vec<f64>, DataError> {
    macro_rules! convert {
        ($($variant:ident),*) => {
            match data {
                $(NumericData::$variant { real, imag } => {
                    if imag.is_some() {
                        return Err(DataError::Complex { name });
                    }
                    real.iter().map(|&v| v as f64).collect()
                })*
            }
        };
    }
    Ok(convert!(
        Int8, UInt8, Int16, UInt16, Int32, UInt32, Int64, UInt64, Single, Double
    ))
}

fn check_finite(name: &'static str, values: &[f64], dims: &[usize]) -> Result<(), DataError> {
    let bad: Vec<usize> = values
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_finite())
        .map(|(i, _)| i)
        .collect();
    let Some(&first) = bad.first() else {
        return Ok(());
    };
    // Report the position as numpy would index it: [image, row, col] or [image, neuron].
    let mut rest = first;
    let index: Vec<String> = dims
        .iter()
        .map(|&d| {
            let i = rest % d;
            rest /= d;
            i.to_string()
        })
        .collect();
    Err(DataError::NotFinite {
        name,
        count: bad.len(),
        first: format!("{name}[{}]", index.join(", ")),
    })
}

/// MATLAB stores arrays column-major (first index fastest); the engine wants row-major.
fn column_major_to_row_major(values: &[f64], dims: &[usize]) -> Vec<f32> {
    let total: usize = dims.iter().product();
    let mut out = vec![0.0f32; total];
    let mut index = vec![0usize; dims.len()];
    for &value in values.iter().take(total) {
        let row_major = index.iter().zip(dims).fold(0, |acc, (&i, &d)| acc * d + i);
        out[row_major] = value as f32;
        for (i, &d) in index.iter_mut().zip(dims) {
            *i += 1;
            if *i < d {
                break;
            }
            *i = 0;
        }
    }
    out
}

/// 3000000000 → "3 000 000 000".
fn grouped(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn dims_text(dims: &[usize]) -> String {
    let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(" × "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_major_reorders_to_numpy_indexing() {
        // A 2×3 matrix [[1,2,3],[4,5,6]] is stored by MATLAB as 1,4,2,5,3,6.
        let out = column_major_to_row_major(&[1.0, 4.0, 2.0, 5.0, 3.0, 6.0], &[2, 3]);
        assert_eq!(out, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn three_dimensional_reorder_puts_first_index_slowest() {
        // values[i + 2*(r + 2*c)] = 100*i + 10*r + c for a [2, 2, 2] array
        let mut cm = vec![0.0; 8];
        for i in 0..2 {
            for r in 0..2 {
                for c in 0..2 {
                    cm[i + 2 * (r + 2 * c)] = (100 * i + 10 * r + c) as f64;
                }
            }
        }
        let out = column_major_to_row_major(&cm, &[2, 2, 2]);
        assert_eq!(out, vec![0.0, 1.0, 10.0, 11.0, 100.0, 101.0, 110.0, 111.0]);
    }

    #[test]
    fn recognises_containers_it_cannot_read() {
        assert_eq!(check_container(b""), Err(DataError::Empty));
        assert_eq!(
            check_container(b"hello, this is text"),
            Err(DataError::NotMat)
        );
        assert_eq!(
            check_container(b"\x89HDF\r\n\x1a\n rest"),
            Err(DataError::Version73)
        );
        assert!(matches!(
            check_container(b"MATLAB 5.0 MAT-file"),
            Err(DataError::Truncated { needed: 128, .. })
        ));
    }
}
