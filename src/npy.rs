//! NumPy `.npy` files (float32, C order): read for inputs given as tensors, written for
//! raw exports. Headers are parsed defensively: a malformed or oversized file is an error.

use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";
/// Largest array we agree to read (elements).
const MAX_ELEMENTS: usize = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path} is not a valid .npy file: {detail}")]
    Format { path: String, detail: String },
}

/// A float32 array.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Serialises a float32 array (format version 1.0, little endian, C order).
pub fn to_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape_txt = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // Pad so that magic(6)+version(2)+len(2)+header ends on a multiple of 64, with '\n'.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Reads a float32 (or float64, converted) array.
pub fn read(path: &Path) -> Result<NpyArray, NpyError> {
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io {
        path: path.display().to_string(),
        error: source,
    })?;
    from_bytes(&bytes).map_err(|detail| NpyError::Format {
        path: path.display().to_string(),
        detail,
    })
}

/// Parses `.npy` bytes.
pub fn from_bytes(bytes: &[u8]) -> Result<NpyArray, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("missing the \\x93NUMPY magic".into());
    }
    let (header_len, start): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported format version {v}")),
    };
    let header = bytes
        .get(start..start.saturating_add(header_len))
        .ok_or("header is truncated")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
    let field = |key: &str| -> Result<&str, String> {
        let at = header
            .find(&format!("'{key}'"))
            .ok_or(format!("header lacks '{key}'"))?;
        let rest = &header[at + key.len() + 2..];
        let colon = rest.find(':').ok_or("malformed header")?;
        Ok(rest[colon + 1..].trim_start())
    };
    let descr = field("descr")?;
    let width = if descr.starts_with("'<f4'") || descr.starts_with("'float32'") {
        4
    } else if descr.starts_with("'<f8'") {
        8
    } else {
        return Err(format!(
            "dtype {} is not little-endian float32/float64",
            descr.split(',').next().unwrap_or("")
        ));
    };
    if field("fortran_order")?.starts_with("True") {
        return Err("Fortran-ordered arrays are not supported".into());
    }
    let shape_txt = field("shape")?;
    let dims_txt = shape_txt
        .strip_prefix('(')
        .and_then(|rest| rest.split_once(')'))
        .map(|(dims, _)| dims)
        .ok_or("malformed shape: expected a tuple like (1, 3, 224, 224)")?;
    let shape: Vec<usize> = dims_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad dimension '{s}'"))
        })
        .collect::<Result<_, _>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or("array is too large")?;
    let body = &bytes[start + header_len..];
    if body.len() != n * width {
        return Err(format!(
            "data holds {} bytes, shape {shape:?} needs {}",
            body.len(),
            n * width
        ));
    }
    let data = if width == 4 {
        body.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        body.chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect()
    };
    Ok(NpyArray { shape, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_header_alignment() {
        let bytes = to_bytes(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
        assert_eq!(
            (bytes.len() - 24) % 64,
            0,
            "data starts on a 64-byte boundary"
        );
        let a = from_bytes(&bytes).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data[5], 6.5);
        let one = from_bytes(&to_bytes(&[4], &[0.0; 4])).unwrap();
        assert_eq!(one.shape, vec![4]);
    }

    #[test]
    fn numpy_written_header_parses() {
        // Exactly what numpy 1.26 writes for np.zeros((1, 2), np.float32).
        let mut b =
            b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }"
                .to_vec();
        b.resize(10 + 0x76 - 1, b' ');
        b.push(b'\n');
        b.extend_from_slice(&[0u8; 8]);
        assert_eq!(from_bytes(&b).unwrap().shape, vec![1, 2]);
    }

    #[test]
    fn truncated_and_lying_files_are_errors() {
        let bytes = to_bytes(&[2, 3], &[0.0; 6]);
        assert!(from_bytes(&bytes[..bytes.len() - 1]).is_err());
        assert!(from_bytes(&bytes[..20]).is_err());
        assert!(from_bytes(b"not numpy at all").is_err());
    }

    /// A header in numpy's layout around `dict` (the text between the braces).
    fn with_header(dict: &str) -> Vec<u8> {
        let header = format!("{{{dict}}}\n");
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        b
    }

    #[test]
    fn malformed_shapes_are_errors_not_panics() {
        // The crash of issue 18: `'shape': ), }` sliced [1..0].
        for dict in [
            "'descr': '<f4', 'fortran_order': False, 'shape': ), ",
            "'descr': '<f4', 'fortran_order': False, 'shape': (",
            "'descr': '<f4', 'fortran_order': False, 'shape': ",
            "'descr': '<f4', 'fortran_order': False, 'shape': 3, ",
            "'descr': '<f4', 'fortran_order': False, 'shape': (-1, 2), ",
            "'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999), ",
            "'descr': '<f4', 'fortran_order': False, 'shape'",
            "'descr'",
        ] {
            assert!(from_bytes(&with_header(dict)).is_err(), "{dict}");
        }
        let ok = with_header("'descr': '<f4', 'fortran_order': False, 'shape': (), ");
        let mut ok = ok;
        ok.extend_from_slice(&1.5f32.to_le_bytes());
        assert_eq!(from_bytes(&ok).unwrap().data, vec![1.5]);
    }

    #[test]
    fn every_single_byte_corruption_of_a_header_is_handled() {
        let good = to_bytes(&[1, 3, 2, 2], &[0.25; 12]);
        for at in 0..good.len().min(128) {
            for byte in [b'(', b')', b',', b':', b'\'', b' ', b'0', b'9', 0u8, 0xff] {
                let mut bad = good.clone();
                bad[at] = byte;
                let _ = from_bytes(&bad);
                let _ = from_bytes(&bad[..at]);
            }
        }
    }
}
