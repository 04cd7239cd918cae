//! NumPy `.npy` files (format version 1.0), the form `numpy.load` reads without help: the magic
//! `\x93NUMPY`, the version, a little-endian u16 header length, a Python dict literal
//! (`{'descr': '<f4', 'fortran_order': False, 'shape': (360, 10), }`) padded with spaces to a
//! multiple of 64 bytes and ended by a newline, then the values in C order. Only what the run
//! records need: little-endian `f32` and `i64` arrays.

use anyhow::{bail, Context, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// An element type this module reads and writes.
pub trait Element: Sized + Copy {
    /// The NumPy type string (`descr`).
    const DESCR: &'static str;
    fn put(self, out: &mut Vec<u8>);
    fn take(bytes: &[u8]) -> Self;
}

impl Element for f32 {
    const DESCR: &'static str = "<f4";
    fn put(self, out: &mut Vec<u8>) {
        out.extend(self.to_le_bytes());
    }
    fn take(b: &[u8]) -> Self {
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

impl Element for i64 {
    const DESCR: &'static str = "<i8";
    fn put(self, out: &mut Vec<u8>) {
        out.extend(self.to_le_bytes());
    }
    fn take(b: &[u8]) -> Self {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        i64::from_le_bytes(a)
    }
}

/// The header dict of an array of `shape` (a 1-tuple keeps its comma, as in Python).
fn header(descr: &str, shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple}, }}")
}

/// The `.npy` bytes of `data` (C order) with `shape`.
pub fn to_npy<T: Element>(shape: &[usize], data: &[T]) -> Vec<u8> {
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "shape and data"
    );
    let mut dict = header(T::DESCR, shape);
    // magic (6) + version (2) + length (2) + dict + newline: a multiple of 64.
    let unpadded = MAGIC.len() + 4 + dict.len() + 1;
    dict.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    dict.push('\n');
    let mut out = Vec::with_capacity(10 + dict.len() + std::mem::size_of_val(data));
    out.extend(MAGIC);
    out.extend([1, 0]);
    out.extend((dict.len() as u16).to_le_bytes());
    out.extend(dict.as_bytes());
    for &v in data {
        v.put(&mut out);
    }
    out
}

/// Reads `.npy` bytes of element type `T` in C order: (shape, values). Errors say what is wrong
/// (not an `.npy` file, another type, Fortran order, too few bytes).
pub fn from_npy<T: Element>(bytes: &[u8]) -> Result<(Vec<usize>, Vec<T>)> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        bail!("not a NumPy .npy file (no \\x93NUMPY magic)");
    }
    let (dict_start, dict_len) = match bytes[6] {
        1 => (10, u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        2 | 3 if bytes.len() >= 12 => (
            12,
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
        ),
        v => bail!(".npy format version {v} is not supported (1.0 expected)"),
    };
    let dict = bytes
        .get(dict_start..dict_start + dict_len)
        .and_then(|d| std::str::from_utf8(d).ok())
        .context(".npy header is cut short or not text")?;
    let descr = dict_value(dict, "descr").context(".npy header has no 'descr'")?;
    if descr.trim_matches('\'') != T::DESCR {
        bail!(".npy holds {descr}, expected '{}'", T::DESCR);
    }
    if dict_value(dict, "fortran_order") != Some("False") {
        bail!(".npy is not in C order (fortran_order must be False)");
    }
    let shape = parse_shape(dict_value(dict, "shape").context(".npy header has no 'shape'")?)?;
    let size = std::mem::size_of::<T>();
    let needed = shape
        .iter()
        .try_fold(size, |bytes, &d| bytes.checked_mul(d))
        .with_context(|| format!(".npy of shape {shape:?} is larger than memory"))?;
    let body = &bytes[dict_start + dict_len..];
    if body.len() != needed {
        bail!(
            ".npy of shape {shape:?} needs {needed} bytes of data, has {}",
            body.len()
        );
    }
    Ok((shape, body.chunks_exact(size).map(T::take).collect()))
}

/// The text of `key`'s value in the header dict (up to the next `, '` or `}`; a tuple whole).
fn dict_value<'a>(dict: &'a str, key: &str) -> Option<&'a str> {
    let rest = &dict[dict.find(&format!("'{key}':"))? + key.len() + 3..];
    let rest = rest.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}'])?
    };
    Some(rest[..end].trim())
}

fn parse_shape(tuple: &str) -> Result<Vec<usize>> {
    let inner = tuple
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .with_context(|| format!(".npy shape `{tuple}` is not a tuple"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.parse()
                .with_context(|| format!(".npy shape `{tuple}`: `{d}` is not a size"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact bytes NumPy 1.x/2.x writes for `np.save(f, np.array([[1, 2], [3, -0.5]],
    /// dtype='<f4'))`: a 118-byte dict padded to 128 bytes in all.
    #[test]
    fn header_is_numpys_byte_for_byte() {
        let bytes = to_npy(&[2, 2], &[1.0f32, 2.0, 3.0, -0.5]);
        let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }";
        let mut want = b"\x93NUMPY\x01\x00\x76\x00".to_vec();
        want.extend(dict.as_bytes());
        want.extend(" ".repeat(128 - 10 - dict.len() - 1).as_bytes());
        want.push(b'\n');
        assert_eq!(&bytes[..128], &want[..]);
        assert_eq!(bytes.len(), 128 + 16);
        assert_eq!(&bytes[128..132], &1.0f32.to_le_bytes());
        let one_d = to_npy(&[3], &[7i64, -1, 0]);
        assert!(String::from_utf8_lossy(&one_d[..128]).contains("'descr': '<i8'"));
        assert!(String::from_utf8_lossy(&one_d[..128]).contains("'shape': (3,), }"));
        assert_eq!(one_d.len(), 128 + 24);
    }

    #[test]
    fn round_trips_are_exact_and_bad_files_are_named() {
        let values = [0.1f32, f32::MIN_POSITIVE, -3.4e38, f32::NAN, 1e-45, 0.0];
        let (shape, back) = from_npy::<f32>(&to_npy(&[3, 2], &values)).unwrap();
        assert_eq!(shape, vec![3, 2]);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&values));
        let labels = [0i64, 9, i64::MAX];
        assert_eq!(
            from_npy::<i64>(&to_npy(&[3], &labels)).unwrap(),
            (vec![3], labels.to_vec())
        );
        let empty = from_npy::<f32>(&to_npy::<f32>(&[0, 10], &[])).unwrap();
        assert_eq!(empty, (vec![0, 10], vec![]));

        let f = to_npy(&[3], &[1.0f32, 2.0, 3.0]);
        let err = |r: Result<(Vec<usize>, Vec<i64>)>| format!("{:#}", r.unwrap_err());
        assert!(err(from_npy(&f)).contains("holds '<f4', expected '<i8'"));
        let short = format!("{:#}", from_npy::<f32>(&f[..f.len() - 1]).unwrap_err());
        assert!(short.contains("needs 12 bytes of data, has 11"), "{short}");
        assert!(
            format!("{:#}", from_npy::<f32>(b"label,predicted").unwrap_err())
                .contains("not a NumPy .npy file")
        );
    }
}
