//! NumPy `.npy` (format v1/v2/v3) and `.npz` (zip of `.npy`, stored or
//! deflate) reading into `f32` (and of 64-bit integer or datetime arrays, such
//! as timestamps, into `i64`), and a small `f4` writer for tests and for users
//! converting their own data.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use super::DataError;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Reads one array from a `.npy` file: its shape and its values converted to
/// `f32` in C (row-major) order.
pub fn read_npy(path: &Path) -> Result<(Vec<usize>, Vec<f32>), DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_npy(&bytes, path)
}

/// Parses the bytes of a `.npy` file; `path` is only used in error messages.
pub fn parse_npy(bytes: &[u8], path: &Path) -> Result<(Vec<usize>, Vec<f32>), DataError> {
    let npy = split_npy(bytes, path)?;
    let values = convert(&npy.descr, npy.data, &npy.shape, npy.fortran, path)?;
    Ok((npy.shape, values))
}

/// Parses the bytes of a one-dimensional `.npy` array of 64-bit integers (`i8`) or of numpy
/// datetimes in nanoseconds (`M8[ns]`, read as nanoseconds since 1970): its values. `None`
/// for any other dtype, so that a caller can fall back to [`parse_npy`].
pub fn parse_npy_i64(bytes: &[u8], path: &Path) -> Result<Option<Vec<i64>>, DataError> {
    let NpyParts {
        descr, shape, data, ..
    } = split_npy(bytes, path)?;
    // The byte order as `convert` reads it.
    let (big, code) = match descr.chars().next() {
        Some('>') => (true, &descr[1..]),
        Some('<' | '|') => (false, &descr[1..]),
        Some('=') => (cfg!(target_endian = "big"), &descr[1..]),
        _ => (cfg!(target_endian = "big"), descr.as_str()),
    };
    if !matches!(code, "i8" | "M8[ns]") {
        return Ok(None);
    }
    let [count] = shape[..] else {
        return Err(DataError::format(
            path,
            format!("a {descr} array of shape {shape:?} where one dimension was expected"),
        ));
    };
    let need = count.saturating_mul(8);
    if need != data.len() {
        let msg = format!(
            "{count} values of {descr} need {need} data bytes but {} are present",
            data.len()
        );
        // Too few bytes is a cut file; too many, a header that does not describe its data.
        return Err(if data.len() < need {
            DataError::truncated(path, msg)
        } else {
            DataError::format(path, msg)
        });
    }
    Ok(Some(
        data.chunks_exact(8)
            .map(|c| {
                let b: [u8; 8] = c.try_into().unwrap_or_default();
                if big {
                    i64::from_be_bytes(b)
                } else {
                    i64::from_le_bytes(b)
                }
            })
            .collect(),
    ))
}

/// The header fields and the data bytes of a `.npy` file.
struct NpyParts<'a> {
    descr: String,
    fortran: bool,
    shape: Vec<usize>,
    data: &'a [u8],
}

/// Splits a `.npy` file into its header fields and data bytes, checking the header.
fn split_npy<'a>(bytes: &'a [u8], path: &Path) -> Result<NpyParts<'a>, DataError> {
    if bytes.len() < MAGIC.len() + 2 {
        if MAGIC.starts_with(bytes) || bytes.starts_with(MAGIC) {
            return Err(DataError::truncated(
                path,
                format!("npy file is only {} bytes long", bytes.len()),
            ));
        }
        return Err(DataError::format(
            path,
            "not a .npy file (no \\x93NUMPY magic)",
        ));
    }
    if !bytes.starts_with(MAGIC) {
        return Err(DataError::format(
            path,
            "not a .npy file (no \\x93NUMPY magic)",
        ));
    }
    let major = bytes[6];
    // v1 has a 2-byte header length; v2 and v3 (utf-8 header) have 4 bytes.
    let (len_size, header_start) = match major {
        1 => (2usize, 10usize),
        2 | 3 => (4, 12),
        v => {
            return Err(DataError::format(
                path,
                format!("unsupported npy format version {v}"),
            ))
        }
    };
    let len_bytes = bytes
        .get(8..8 + len_size)
        .ok_or_else(|| DataError::truncated(path, "npy header length cut off"))?;
    let header_len = len_bytes
        .iter()
        .rev()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    let header_end = header_start
        .checked_add(header_len)
        .ok_or_else(|| DataError::format(path, "npy header length overflows"))?;
    let header = bytes.get(header_start..header_end).ok_or_else(|| {
        DataError::truncated(
            path,
            format!(
                "npy header says {header_len} bytes but the file has {}",
                bytes.len().saturating_sub(header_start)
            ),
        )
    })?;
    let header = std::str::from_utf8(header)
        .map_err(|_| DataError::format(path, "npy header is not valid text"))?;
    let (descr, fortran, shape) = parse_header(header, path)?;
    Ok(NpyParts {
        descr,
        fortran,
        shape,
        data: &bytes[header_end..],
    })
}

/// Extracts `descr`, `fortran_order` and `shape` from the python dict
/// literal in a npy header, e.g.
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
fn parse_header(header: &str, path: &Path) -> Result<(String, bool, Vec<usize>), DataError> {
    let value_after = |key: &str| -> Result<&str, DataError> {
        let pat_single = format!("'{key}'");
        let pat_double = format!("\"{key}\"");
        let pos = header
            .find(&pat_single)
            .map(|p| p + pat_single.len())
            .or_else(|| header.find(&pat_double).map(|p| p + pat_double.len()))
            .ok_or_else(|| {
                DataError::format(path, format!("npy header lacks '{key}': {header}"))
            })?;
        let rest = header[pos..].trim_start();
        let rest = rest
            .strip_prefix(':')
            .ok_or_else(|| DataError::format(path, format!("npy header malformed: {header}")))?;
        Ok(rest.trim_start())
    };
    let descr_rest = value_after("descr")?;
    let quote = descr_rest
        .chars()
        .next()
        .filter(|c| *c == '\'' || *c == '"');
    let descr = match quote {
        Some(q) => {
            let inner = &descr_rest[1..];
            let end = inner.find(q).ok_or_else(|| {
                DataError::format(path, format!("npy header malformed: {header}"))
            })?;
            inner[..end].to_string()
        }
        None => {
            return Err(DataError::format(
                path,
                format!("unsupported npy dtype (structured or not a string): {header}"),
            ))
        }
    };
    let fortran_rest = value_after("fortran_order")?;
    let fortran = if fortran_rest.starts_with("True") {
        true
    } else if fortran_rest.starts_with("False") {
        false
    } else {
        return Err(DataError::format(
            path,
            format!("npy header has a bad fortran_order: {header}"),
        ));
    };
    let shape_rest = value_after("shape")?;
    let inner = shape_rest
        .strip_prefix('(')
        .and_then(|r| r.find(')').map(|e| &r[..e]))
        .ok_or_else(|| DataError::format(path, format!("npy header has a bad shape: {header}")))?;
    let mut shape = Vec::new();
    for part in inner.split(',') {
        let part = part.trim().trim_end_matches('L');
        if part.is_empty() {
            continue;
        }
        let d = part.parse::<usize>().map_err(|_| {
            DataError::format(path, format!("npy header has a bad dimension `{part}`"))
        })?;
        shape.push(d);
    }
    Ok((descr, fortran, shape))
}

/// Element type of a numpy array we can convert to f32.
#[derive(Clone, Copy, Debug)]
enum Kind {
    F4,
    F8,
    I1,
    I2,
    I4,
    I8,
    U1,
    U2,
    U4,
    U8,
    B1,
}

impl Kind {
    fn size(self) -> usize {
        match self {
            Kind::F4 | Kind::I4 | Kind::U4 => 4,
            Kind::F8 | Kind::I8 | Kind::U8 => 8,
            Kind::I2 | Kind::U2 => 2,
            Kind::I1 | Kind::U1 | Kind::B1 => 1,
        }
    }
}

/// Converts raw array bytes of numpy dtype `descr` (e.g. `<f4`, `|u1`, `>f8`)
/// and `shape` into f32 values in C order. Shared with the pickle reader,
/// which meets the same raw buffers inside numpy pickles.
pub(crate) fn convert(
    descr: &str,
    data: &[u8],
    shape: &[usize],
    fortran: bool,
    path: &Path,
) -> Result<Vec<f32>, DataError> {
    let (order, code) = match descr.chars().next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, &descr[1..]),
        _ => ('=', descr),
    };
    let big = match order {
        '>' => true,
        '<' | '|' => false,
        _ => cfg!(target_endian = "big"),
    };
    let kind = match code {
        "f4" => Kind::F4,
        "f8" => Kind::F8,
        "i1" => Kind::I1,
        "i2" => Kind::I2,
        "i4" => Kind::I4,
        "i8" => Kind::I8,
        "u1" => Kind::U1,
        "u2" => Kind::U2,
        "u4" => Kind::U4,
        "u8" => Kind::U8,
        "b1" | "?" => Kind::B1,
        other => {
            return Err(DataError::format(
                path,
                format!(
                "unsupported numpy dtype `{other}` (supported: f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1)"
            ),
            ))
        }
    };
    let count = shape
        .iter()
        .try_fold(1usize, |acc, d| acc.checked_mul(*d))
        .ok_or_else(|| DataError::format(path, format!("array shape {shape:?} overflows")))?;
    let need = count
        .checked_mul(kind.size())
        .ok_or_else(|| DataError::format(path, format!("array shape {shape:?} overflows")))?;
    // Compare sizes before allocating so a corrupt header cannot make us
    // reserve absurd amounts of memory.
    if data.len() < need {
        return Err(DataError::truncated(
            path,
            format!(
                "array {shape:?} of {descr} needs {need} data bytes but only {} are present",
                data.len()
            ),
        ));
    }
    if data.len() > need {
        return Err(DataError::format(
            path,
            format!(
                "array {shape:?} of {descr} needs {need} data bytes but {} are present",
                data.len()
            ),
        ));
    }
    let sz = kind.size();
    let mut out = Vec::with_capacity(count);
    for chunk in data.chunks_exact(sz) {
        let mut b = [0u8; 8];
        b[..sz].copy_from_slice(chunk);
        if big {
            b[..sz].reverse();
        }
        let v = match kind {
            Kind::F4 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Kind::F8 => f64::from_le_bytes(b) as f32,
            Kind::I1 => f32::from(b[0] as i8),
            Kind::I2 => f32::from(i16::from_le_bytes([b[0], b[1]])),
            Kind::I4 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            Kind::I8 => i64::from_le_bytes(b) as f32,
            Kind::U1 => f32::from(b[0]),
            Kind::U2 => f32::from(u16::from_le_bytes([b[0], b[1]])),
            Kind::U4 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            Kind::U8 => u64::from_le_bytes(b) as f32,
            Kind::B1 => f32::from(u8::from(b[0] != 0)),
        };
        out.push(v);
    }
    if fortran && shape.len() > 1 {
        out = fortran_to_c(&out, shape);
    }
    Ok(out)
}

/// Reorders a column-major buffer into row-major order.
fn fortran_to_c(src: &[f32], shape: &[usize]) -> Vec<f32> {
    // Fortran strides: the first axis varies fastest.
    let mut fstride = vec![1usize; shape.len()];
    for k in 1..shape.len() {
        fstride[k] = fstride[k - 1] * shape[k - 1];
    }
    let mut out = Vec::with_capacity(src.len());
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..src.len() {
        let off: usize = idx.iter().zip(&fstride).map(|(i, s)| i * s).sum();
        out.push(src.get(off).copied().unwrap_or(0.0));
        // Advance the C-order multi-index: the last axis varies fastest.
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    out
}

fn open_zip(path: &Path) -> Result<zip::ZipArchive<File>, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    zip::ZipArchive::new(file).map_err(|e| zip_error(path, e))
}

fn zip_error(path: &Path, e: zip::result::ZipError) -> DataError {
    use zip::result::ZipError;
    match e {
        ZipError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            DataError::truncated(path, format!("zip data ends early: {io}"))
        }
        ZipError::Io(io) => DataError::io(path, io),
        ZipError::InvalidArchive(msg) => {
            // An npz cut short loses its central directory (stored at the
            // end) while still starting with a local file header.
            let starts_like_zip = File::open(path)
                .and_then(|mut f| {
                    let mut sig = [0u8; 4];
                    f.read_exact(&mut sig).map(|_| sig)
                })
                .map(|sig| &sig == b"PK\x03\x04")
                .unwrap_or(false);
            if starts_like_zip {
                DataError::truncated(
                    path,
                    format!("zip archive is incomplete ({msg}); was the download cut short?"),
                )
            } else {
                DataError::format(path, format!("not a valid .npz (zip) file: {msg}"))
            }
        }
        other => DataError::format(path, format!("cannot read .npz (zip): {other}")),
    }
}

/// The array names in a `.npz` file (entry names without `.npy`).
pub fn npz_keys(path: &Path) -> Result<Vec<String>, DataError> {
    let archive = open_zip(path)?;
    let mut keys: Vec<String> = archive
        .file_names()
        .map(|n| n.strip_suffix(".npy").unwrap_or(n).to_string())
        .collect();
    keys.sort();
    Ok(keys)
}

/// Reads array `key` from a `.npz` file: its shape and f32 values (C order).
pub fn read_npz(path: &Path, key: &str) -> Result<(Vec<usize>, Vec<f32>), DataError> {
    let (name, bytes) = npz_entry(path, key)?;
    parse_npy(&bytes, &path.join(&name)).map_err(|e| in_entry(path, &name, e))
}

/// An array read by [`read_npz_i64`]: its values where they are 64-bit integers, otherwise
/// only its shape.
#[derive(Clone, Debug, PartialEq)]
pub enum NpzI64 {
    /// A one-dimensional `i8` or `M8[ns]` array ([`parse_npy_i64`]).
    Values(Vec<i64>),
    /// Any other dtype [`parse_npy`] reads (floats, say): the shape only, since its values
    /// are not exact 64-bit integers.
    Shape(Vec<usize>),
}

/// Reads array `key` from a `.npz` file as 64-bit integers where its dtype is `i8` or `M8[ns]`
/// ([`parse_npy_i64`]), and as a shape for the other dtypes [`parse_npy`] reads. The entry is
/// unpacked once, whichever it is.
pub fn read_npz_i64(path: &Path, key: &str) -> Result<NpzI64, DataError> {
    let (name, bytes) = npz_entry(path, key)?;
    let at = path.join(&name);
    let read = match parse_npy_i64(&bytes, &at) {
        Ok(Some(v)) => Ok(NpzI64::Values(v)),
        Ok(None) => parse_npy(&bytes, &at).map(|(shape, _)| NpzI64::Shape(shape)),
        Err(e) => Err(e),
    };
    read.map_err(|e| in_entry(path, &name, e))
}

/// Reports an entry's parse error against the `.npz` file (with the entry name) rather than
/// a path that does not exist on disk.
fn in_entry(path: &Path, name: &str, e: DataError) -> DataError {
    match e {
        DataError::Truncated { msg, .. } => {
            DataError::truncated(path, format!("entry `{name}`: {msg}"))
        }
        DataError::Format { msg, .. } => DataError::format(path, format!("entry `{name}`: {msg}")),
        other => other,
    }
}

/// The name and bytes of the entry of array `key` in a `.npz` file.
fn npz_entry(path: &Path, key: &str) -> Result<(String, Vec<u8>), DataError> {
    let mut archive = open_zip(path)?;
    let wanted = format!("{key}.npy");
    let name = archive
        .file_names()
        .find(|n| *n == wanted || *n == key)
        .map(str::to_string);
    let Some(name) = name else {
        let mut present: Vec<String> = archive
            .file_names()
            .map(|n| n.strip_suffix(".npy").unwrap_or(n).to_string())
            .collect();
        present.sort();
        return Err(DataError::MissingKey {
            path: path.to_path_buf(),
            key: key.to_string(),
            present,
        });
    };
    let mut entry = archive.by_name(&name).map_err(|e| zip_error(path, e))?;
    let declared = entry.size();
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            DataError::truncated(path, format!("entry `{name}` ends early: {e}"))
        } else {
            DataError::format(path, format!("cannot decompress entry `{name}`: {e}"))
        }
    })?;
    if (bytes.len() as u64) < declared {
        return Err(DataError::truncated(
            path,
            format!("entry `{name}` has {} of its {declared} bytes", bytes.len()),
        ));
    }
    Ok((name, bytes))
}

/// Serializes an f4 array as `.npy` v1 bytes.
fn npy_bytes(shape: &[usize], data: &[f32], path: &Path) -> Result<Vec<u8>, DataError> {
    let count = shape
        .iter()
        .try_fold(1usize, |acc, d| acc.checked_mul(*d))
        .ok_or_else(|| DataError::shape(path, format!("shape {shape:?} overflows")))?;
    if count != data.len() {
        return Err(DataError::shape(
            path,
            format!(
                "shape {shape:?} holds {count} values but {} were given",
                data.len()
            ),
        ));
    }
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = if shape.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // numpy pads the header with spaces so the data starts 64-byte aligned.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let header_len = u16::try_from(header.len())
        .map_err(|_| DataError::shape(path, "npy header too long for format v1"))?;
    let mut out = Vec::with_capacity(header.len() + 10 + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

/// Writes `data` with `shape` as a little-endian f4 `.npy` file.
pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), DataError> {
    let bytes = npy_bytes(shape, data, path)?;
    std::fs::write(path, bytes).map_err(|e| DataError::io(path, e))
}

/// Writes arrays as an uncompressed `.npz` (what `np.savez` produces).
pub fn write_npz(path: &Path, arrays: &[(&str, &[usize], &[f32])]) -> Result<(), DataError> {
    write_zip(path, arrays, zip::CompressionMethod::Stored)
}

/// Writes arrays as a deflate-compressed `.npz` (`np.savez_compressed`).
pub fn write_npz_compressed(
    path: &Path,
    arrays: &[(&str, &[usize], &[f32])],
) -> Result<(), DataError> {
    write_zip(path, arrays, zip::CompressionMethod::Deflated)
}

fn write_zip(
    path: &Path,
    arrays: &[(&str, &[usize], &[f32])],
    method: zip::CompressionMethod,
) -> Result<(), DataError> {
    let file = File::create(path).map_err(|e| DataError::io(path, e))?;
    let mut zw = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(method)
        .large_file(false);
    for (key, shape, data) in arrays {
        let bytes = npy_bytes(shape, data, path)?;
        zw.start_file(format!("{key}.npy"), opts)
            .map_err(|e| DataError::format(path, format!("cannot write zip entry: {e}")))?;
        zw.write_all(&bytes).map_err(|e| DataError::io(path, e))?;
    }
    zw.finish()
        .map_err(|e| DataError::format(path, format!("cannot finish zip: {e}")))?;
    Ok(())
}

/// A one-dimensional `.npy` of 64-bit values under `descr` (`<i8`, `>i8`, `<M8[ns]`, ...),
/// for tests of [`parse_npy_i64`] and of the loaders that read timestamps.
#[cfg(test)]
pub(crate) fn npy_i64_bytes(descr: &str, values: &[i64]) -> Vec<u8> {
    let header = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': ({},), }}\n",
        values.len()
    );
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        if descr.starts_with('>') {
            out.extend_from_slice(&v.to_be_bytes());
        } else {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Adds a stored entry `<key>.npy` with the given `.npy` bytes to the `.npz` at `path`
/// (written by [`write_npz`]), for tests.
#[cfg(test)]
pub(crate) fn add_npz_entry(path: &Path, key: &str, npy: &[u8]) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut zw = zip::ZipWriter::new_append(file).unwrap();
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(false);
    zw.start_file(format!("{key}.npy"), opts).unwrap();
    zw.write_all(npy).unwrap();
    zw.finish().unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int64_and_datetime_arrays_read_exactly() {
        let p = Path::new("t.npy");
        // Nanosecond timestamps beyond f32's (and f64's) integer range stay exact.
        let ns = [1_330_560_000_000_000_000i64, 1_330_560_300_000_000_001, -7];
        for descr in ["<i8", ">i8", "<M8[ns]", "i8"] {
            let b = npy_i64_bytes(descr, &ns);
            assert_eq!(parse_npy_i64(&b, p).unwrap(), Some(ns.to_vec()), "{descr}");
        }
        // Other dtypes are left to parse_npy.
        let b = raw_npy(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\n",
            &1.0f32.to_le_bytes(),
        );
        assert_eq!(parse_npy_i64(&b, p).unwrap(), None);
        let b = raw_npy(
            1,
            "{'descr': '<M8[s]', 'fortran_order': False, 'shape': (0,), }\n",
            &[],
        );
        assert_eq!(parse_npy_i64(&b, p).unwrap(), None, "seconds are not read");
        // Two dimensions, and missing bytes, are errors that say so.
        let b = raw_npy(
            1,
            "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 1), }\n",
            &5i64.to_le_bytes(),
        );
        let e = parse_npy_i64(&b, p).unwrap_err().to_string();
        assert!(e.contains("one dimension"), "{e}");
        let mut b = npy_i64_bytes("<i8", &ns);
        b.push(0);
        let e = parse_npy_i64(&b, p).unwrap_err();
        assert!(matches!(e, DataError::Format { .. }), "{e}");
        b.truncate(b.len() - 4);
        let e = parse_npy_i64(&b, p).unwrap_err();
        assert!(matches!(e, DataError::Truncated { .. }), "{e}");
        // Through an npz, errors name the entry.
        let dir = tempfile::tempdir().unwrap();
        let z = dir.path().join("a.npz");
        write_npz(&z, &[("data", &[1], &[0.0])]).unwrap();
        add_npz_entry(&z, "timestamps", &b);
        let e = read_npz_i64(&z, "timestamps").unwrap_err().to_string();
        assert!(e.contains("a.npz") && e.contains("timestamps.npy"), "{e}");
        assert!(matches!(
            read_npz_i64(&z, "nope"),
            Err(DataError::MissingKey { .. })
        ));
        // Integers come back as values, floats as their shape only.
        let z = dir.path().join("b.npz");
        write_npz(&z, &[("ts", &[2], &[1.0, 2.0])]).unwrap();
        add_npz_entry(&z, "ns", &npy_i64_bytes("<i8", &ns));
        assert_eq!(read_npz_i64(&z, "ts").unwrap(), NpzI64::Shape(vec![2]));
        assert_eq!(read_npz_i64(&z, "ns").unwrap(), NpzI64::Values(ns.to_vec()));
    }

    /// Builds a `.npy` with an arbitrary header and raw data, like numpy would.
    fn raw_npy(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[version, 0]);
        if version == 1 {
            out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn roundtrip_npy_and_npz() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5).collect();
        write_npy(&p, &[2, 3, 4], &data).unwrap();
        let (shape, v) = read_npy(&p).unwrap();
        assert_eq!(shape, vec![2, 3, 4]);
        assert_eq!(v, data);
        // Data must start 64-byte aligned like numpy's own files.
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!((bytes.len() - 96) % 64, 0);

        for compressed in [false, true] {
            let z = dir.path().join(format!("a{compressed}.npz"));
            let arrays: [(&str, &[usize], &[f32]); 2] =
                [("data", &[2, 12], &data), ("ts", &[2], &[1.0, 2.0])];
            if compressed {
                write_npz_compressed(&z, &arrays).unwrap();
            } else {
                write_npz(&z, &arrays).unwrap();
            }
            assert_eq!(npz_keys(&z).unwrap(), vec!["data", "ts"]);
            let (s, v) = read_npz(&z, "data").unwrap();
            assert_eq!(s, vec![2, 12]);
            assert_eq!(v, data);
            assert_eq!(read_npz(&z, "ts").unwrap().1, vec![1.0, 2.0]);
        }
    }

    #[test]
    fn dtypes_versions_and_fortran_order() {
        let p = Path::new("t.npy");
        // v2 header, <f8.
        let d: Vec<u8> = [1.5f64, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let b = raw_npy(
            2,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }\n",
            &d,
        );
        assert_eq!(parse_npy(&b, p).unwrap(), (vec![2], vec![1.5, -2.0]));
        // v3, <i8.
        let d: Vec<u8> = [7i64, -3].iter().flat_map(|v| v.to_le_bytes()).collect();
        let b = raw_npy(
            3,
            "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }\n",
            &d,
        );
        assert_eq!(parse_npy(&b, p).unwrap().1, vec![7.0, -3.0]);
        // <i4, <i2, |u1 and big-endian >f4.
        let d: Vec<u8> = [-5i32].iter().flat_map(|v| v.to_le_bytes()).collect();
        let b = raw_npy(
            1,
            "{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }\n",
            &d,
        );
        assert_eq!(parse_npy(&b, p).unwrap().1, vec![-5.0]);
        let d: Vec<u8> = [-300i16].iter().flat_map(|v| v.to_le_bytes()).collect();
        let b = raw_npy(
            1,
            "{'descr': '<i2', 'fortran_order': False, 'shape': (1,), }\n",
            &d,
        );
        assert_eq!(parse_npy(&b, p).unwrap().1, vec![-300.0]);
        let b = raw_npy(
            1,
            "{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }\n",
            &[0, 255],
        );
        assert_eq!(parse_npy(&b, p).unwrap().1, vec![0.0, 255.0]);
        let b = raw_npy(
            1,
            "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }\n",
            &2.5f32.to_be_bytes(),
        );
        assert_eq!(parse_npy(&b, p).unwrap().1, vec![2.5]);
        // Fortran order: memory holds columns; [[1,2,3],[4,5,6]] is 1 4 2 5 3 6.
        let d: Vec<u8> = [1f32, 4., 2., 5., 3., 6.]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let b = raw_npy(
            1,
            "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }\n",
            &d,
        );
        assert_eq!(
            parse_npy(&b, p).unwrap(),
            (vec![2, 3], vec![1., 2., 3., 4., 5., 6.])
        );
        // Unsupported dtype is a Format error naming it.
        let b = raw_npy(
            1,
            "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }\n",
            &[0; 8],
        );
        let e = parse_npy(&b, p).unwrap_err();
        assert!(matches!(e, DataError::Format { .. }) && e.to_string().contains("c8"));
    }

    #[test]
    fn truncated_npy_and_npz() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cut.npy");
        let data = vec![1.0f32; 100];
        write_npy(&p, &[10, 10], &data).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        for cut in [3usize, 9, 40, bytes.len() - 1] {
            std::fs::write(&p, &bytes[..cut]).unwrap();
            let e = read_npy(&p).unwrap_err();
            assert!(matches!(e, DataError::Truncated { .. }), "cut {cut}: {e}");
            assert!(e.to_string().contains("cut.npy"), "{e}");
        }
        let z = dir.path().join("cut.npz");
        write_npz_compressed(&z, &[("data", &[10, 10], &data)]).unwrap();
        let bytes = std::fs::read(&z).unwrap();
        std::fs::write(&z, &bytes[..bytes.len() / 2]).unwrap();
        let e = read_npz(&z, "data").unwrap_err();
        assert!(matches!(e, DataError::Truncated { .. }), "{e}");
        assert!(e.to_string().contains("cut.npz"), "{e}");
        // Garbage that is not a zip at all is a Format error.
        std::fs::write(&z, b"hello world, not a zip").unwrap();
        assert!(matches!(
            read_npz(&z, "data").unwrap_err(),
            DataError::Format { .. }
        ));
    }

    #[test]
    fn missing_key_lists_present_keys() {
        let dir = tempfile::tempdir().unwrap();
        let z = dir.path().join("k.npz");
        write_npz(&z, &[("x", &[1], &[1.0]), ("y", &[1], &[2.0])]).unwrap();
        let e = read_npz(&z, "data").unwrap_err();
        match &e {
            DataError::MissingKey { key, present, .. } => {
                assert_eq!(key, "data");
                assert_eq!(present, &vec!["x".to_string(), "y".to_string()]);
            }
            other => panic!("expected MissingKey, got {other}"),
        }
        let s = e.to_string();
        assert!(s.contains("k.npz") && s.contains("x, y"), "{s}");
    }

    #[test]
    fn write_rejects_wrong_length() {
        let dir = tempfile::tempdir().unwrap();
        let e = write_npy(&dir.path().join("w.npy"), &[2, 2], &[1.0]).unwrap_err();
        assert!(matches!(e, DataError::Shape { .. }));
    }
}
