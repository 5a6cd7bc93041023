//! CPU tensors known at load time: ONNX initializers, `Constant` nodes and everything
//! folded from them. Decoding validates sizes before allocating, so a hostile file that
//! claims 10^12 elements is refused instead of exhausting memory.

use super::{ModelError, Result};

/// Refuse any single constant above this many elements (4 GiB of f32).
pub const MAX_CONST_ELEMENTS: usize = 1 << 30;

/// Element storage of a constant: floats (f16/f32/f64 become f32) or integers (all int
/// widths and bool become i64).
#[derive(Debug, Clone, PartialEq)]
pub enum ConstData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// A dense row-major tensor on the CPU.
#[derive(Debug, Clone, PartialEq)]
pub struct ConstTensor {
    pub shape: Vec<usize>,
    pub data: ConstData,
}

/// Checked product of dims; `None` on overflow.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Converts ONNX `i64` dims to `usize`, refusing negatives and absurd sizes.
pub fn dims_from_i64(dims: &[i64], what: &str) -> Result<Vec<usize>> {
    let shape: Vec<usize> = dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| ModelError::invalid(what, format!("negative dimension in {dims:?}")))?;
    match checked_numel(&shape) {
        Some(n) if n <= MAX_CONST_ELEMENTS => Ok(shape),
        _ => Err(ModelError::TooLarge {
            what: what.to_string(),
            shape: dims.to_vec(),
        }),
    }
}

impl ConstTensor {
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(checked_numel(&shape), Some(data.len()));
        Self {
            shape,
            data: ConstData::F32(data),
        }
    }

    pub fn i64(shape: Vec<usize>, data: Vec<i64>) -> Self {
        debug_assert_eq!(checked_numel(&shape), Some(data.len()));
        Self {
            shape,
            data: ConstData::I64(data),
        }
    }

    pub fn numel(&self) -> usize {
        match &self.data {
            ConstData::F32(v) => v.len(),
            ConstData::I64(v) => v.len(),
        }
    }

    pub fn is_float(&self) -> bool {
        matches!(self.data, ConstData::F32(_))
    }

    /// Values as f32 (integers converted).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            ConstData::F32(v) => v.clone(),
            ConstData::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// Values as i64 (floats truncated, as ONNX Cast does).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match &self.data {
            ConstData::F32(v) => v.iter().map(|&x| x as i64).collect(),
            ConstData::I64(v) => v.clone(),
        }
    }

    /// The single value of a scalar or one-element tensor, as f32.
    pub fn scalar_f32(&self) -> Option<f32> {
        (self.numel() == 1).then(|| self.to_f32_vec()[0])
    }

    /// Gathers elements by flat index into a new tensor of `shape` (same dtype).
    pub fn select_flat(&self, shape: Vec<usize>, flat: &[usize]) -> Self {
        let data = match &self.data {
            ConstData::F32(v) => ConstData::F32(flat.iter().map(|&i| v[i]).collect()),
            ConstData::I64(v) => ConstData::I64(flat.iter().map(|&i| v[i]).collect()),
        };
        Self { shape, data }
    }

    /// Count of non-finite float values (NaN/Inf), for load-time warnings.
    pub fn non_finite_count(&self) -> usize {
        match &self.data {
            ConstData::F32(v) => v.iter().filter(|x| !x.is_finite()).count(),
            ConstData::I64(_) => 0,
        }
    }

    /// Decodes an ONNX `TensorProto`, checking that the stored bytes match the claimed dims.
    pub fn from_proto(t: &onnx_ir::TensorProto) -> Result<Self> {
        let what = format!("tensor '{}'", t.name);
        if !t.external_data.is_empty() || t.data_location.value() == 1 {
            return Err(ModelError::Unsupported {
                what,
                detail: "weights stored in external data files are not supported; \
                         re-save the model with all weights inside the .onnx file"
                    .into(),
            });
        }
        let shape = dims_from_i64(&t.dims, &what)?;
        let n = checked_numel(&shape).unwrap_or(usize::MAX);
        let raw: &[u8] = &t.raw_data;
        let width = match t.data_type {
            1 | 6 | 12 => 4,
            2 | 3 | 9 => 1,
            4 | 5 | 10 => 2,
            7 | 11 | 13 => 8,
            other => {
                return Err(ModelError::Unsupported {
                    what,
                    detail: format!("element type {} ({})", other, dtype_name(other)),
                });
            }
        };
        let check_len = |len: usize| {
            if len == n {
                Ok(())
            } else {
                Err(ModelError::invalid(
                    &what,
                    format!("holds {len} elements but its dims {:?} need {n}", t.dims),
                ))
            }
        };
        let data = if !raw.is_empty() {
            if !raw.len().is_multiple_of(width) {
                return Err(ModelError::invalid(
                    &what,
                    "raw data length is not a multiple of the element size",
                ));
            }
            check_len(raw.len() / width)?;
            decode_raw(t.data_type, raw)
        } else {
            let data = match t.data_type {
                1 => ConstData::F32(t.float_data.clone()),
                11 => ConstData::F32(t.double_data.iter().map(|&x| x as f32).collect()),
                7 => ConstData::I64(t.int64_data.clone()),
                12 | 13 => ConstData::I64(t.uint64_data.iter().map(|&x| x as i64).collect()),
                10 => ConstData::F32(t.int32_data.iter().map(|&x| f16_to_f32(x as u16)).collect()),
                _ => ConstData::I64(t.int32_data.iter().map(|&x| i64::from(x)).collect()),
            };
            let len = match &data {
                ConstData::F32(v) => v.len(),
                ConstData::I64(v) => v.len(),
            };
            check_len(len)?;
            data
        };
        Ok(Self { shape, data })
    }
}

fn decode_raw(data_type: i32, raw: &[u8]) -> ConstData {
    fn chunks<const W: usize>(raw: &[u8]) -> impl Iterator<Item = [u8; W]> + '_ {
        raw.chunks_exact(W).map(|c| {
            let mut a = [0u8; W];
            a.copy_from_slice(c);
            a
        })
    }
    match data_type {
        1 => ConstData::F32(chunks::<4>(raw).map(f32::from_le_bytes).collect()),
        11 => ConstData::F32(
            chunks::<8>(raw)
                .map(|b| f64::from_le_bytes(b) as f32)
                .collect(),
        ),
        10 => ConstData::F32(
            chunks::<2>(raw)
                .map(|b| f16_to_f32(u16::from_le_bytes(b)))
                .collect(),
        ),
        2 | 9 => ConstData::I64(raw.iter().map(|&b| i64::from(b)).collect()),
        3 => ConstData::I64(raw.iter().map(|&b| i64::from(b as i8)).collect()),
        4 => ConstData::I64(
            chunks::<2>(raw)
                .map(|b| i64::from(u16::from_le_bytes(b)))
                .collect(),
        ),
        5 => ConstData::I64(
            chunks::<2>(raw)
                .map(|b| i64::from(i16::from_le_bytes(b)))
                .collect(),
        ),
        6 => ConstData::I64(
            chunks::<4>(raw)
                .map(|b| i64::from(i32::from_le_bytes(b)))
                .collect(),
        ),
        12 => ConstData::I64(
            chunks::<4>(raw)
                .map(|b| i64::from(u32::from_le_bytes(b)))
                .collect(),
        ),
        _ => ConstData::I64(chunks::<8>(raw).map(i64::from_le_bytes).collect()),
    }
}

/// IEEE half to single precision.
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: renormalise.
            let mut e = 127 - 15 + 1;
            let mut f = frac;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

/// ONNX element type name for messages.
pub fn dtype_name(code: i32) -> &'static str {
    match code {
        1 => "float32",
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "float64",
        12 => "uint32",
        13 => "uint64",
        14 => "complex64",
        15 => "complex128",
        16 => "bfloat16",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_decodes_known_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn claimed_huge_dims_are_refused_before_allocating() {
        let t = onnx_ir::TensorProto {
            dims: vec![1_000_000, 1_000_000],
            data_type: 1,
            ..Default::default()
        };
        assert!(matches!(
            ConstTensor::from_proto(&t),
            Err(ModelError::TooLarge { .. })
        ));
    }

    #[test]
    fn raw_length_mismatch_is_an_error() {
        let t = onnx_ir::TensorProto {
            dims: vec![4],
            data_type: 1,
            raw_data: vec![0u8; 12].into(),
            ..Default::default()
        };
        assert!(matches!(
            ConstTensor::from_proto(&t),
            Err(ModelError::Invalid { .. })
        ));
    }
}
