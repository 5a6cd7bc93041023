//! Camera frames to RGB: packed YUYV and planar NV12 (BT.601 limited range), MJPEG (with the
//! standard Huffman tables inserted when a frame lacks them), grey and packed RGB/BGR.

use std::borrow::Cow;

use image::RgbImage;

use super::{MAX_SIDE, WebcamError};

/// BT.601 limited range ("studio swing": Y in 16..=235, Cb/Cr in 16..=240 around 128) to
/// RGB, in the usual 8-bit fixed point: `R = 1.164 (Y−16) + 1.596 (V−128)`,
/// `G = 1.164 (Y−16) − 0.392 (U−128) − 0.813 (V−128)`, `B = 1.164 (Y−16) + 2.017 (U−128)`,
/// each coefficient × 256 and rounded.
fn bt601_limited_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = 298 * (i32::from(y) - 16);
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    let clamp = |x: i32| ((x + 128) >> 8).clamp(0, 255) as u8;
    [
        clamp(c + 409 * e),
        clamp(c - 100 * d - 208 * e),
        clamp(c + 516 * d),
    ]
}

/// Converts a packed YUYV (4:2:2) frame to RGB with BT.601 limited-range coefficients.
/// `stride` is the driver's `bytesperline` (≥ 2 × width; padding at the end of each row is
/// skipped). An odd width is refused (two pixels share each U and V); the last row may end
/// right after its pixels.
pub fn yuyv_to_rgb(
    data: &[u8],
    width: u32,
    height: u32,
    stride: usize,
) -> Result<RgbImage, WebcamError> {
    let bad = |reason: String| WebcamError::BadFrame {
        format: "YUYV",
        width,
        height,
        reason,
    };
    check_size("YUYV", data, (width, height), Some(0))?;
    if !width.is_multiple_of(2) {
        return Err(bad(
            "the width is odd, but YUYV stores pixels in pairs sharing U and V".into(),
        ));
    }
    let row = width as usize * 2;
    if stride < row {
        return Err(bad(format!(
            "the row stride of {stride} bytes is shorter than a row ({row} bytes)"
        )));
    }
    let needed = stride
        .checked_mul(height as usize - 1)
        .and_then(|n| n.checked_add(row));
    check_size("YUYV", data, (width, height), needed)?;
    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    for (src, dst) in data
        .chunks(stride)
        .zip(rgb.chunks_exact_mut(width as usize * 3))
    {
        for (yuyv, out) in src[..row].chunks_exact(4).zip(dst.chunks_exact_mut(6)) {
            let &[y0, u, y1, v] = yuyv else {
                continue;
            };
            out[..3].copy_from_slice(&bt601_limited_to_rgb(y0, u, v));
            out[3..].copy_from_slice(&bt601_limited_to_rgb(y1, u, v));
        }
    }
    RgbImage::from_raw(width, height, rgb)
        .ok_or_else(|| bad("the RGB buffer has the wrong size".into()))
}

/// Checks a frame's size against [`MAX_SIDE`] and `needed(width, height)` bytes.
fn check_size(
    format: &'static str,
    data: &[u8],
    (width, height): (u32, u32),
    needed: Option<usize>,
) -> Result<(), WebcamError> {
    let bad = |reason: String| WebcamError::BadFrame {
        format,
        width,
        height,
        reason,
    };
    if width == 0 || height == 0 {
        return Err(bad("the frame is empty".into()));
    }
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(bad(format!("larger than {MAX_SIDE} pixels per side")));
    }
    match needed {
        Some(n) if data.len() >= n => Ok(()),
        Some(n) => Err(bad(format!(
            "{} bytes, but the frame needs {n}",
            data.len()
        ))),
        None => Err(bad("its size overflows".into())),
    }
}

/// Converts an NV12 frame (a `width × height` Y plane, then `U V` pairs for each 2×2 block)
/// to RGB with BT.601 limited-range coefficients. Odd sizes are refused.
pub fn nv12_to_rgb(data: &[u8], width: u32, height: u32) -> Result<RgbImage, WebcamError> {
    let (w, h) = (width as usize, height as usize);
    let needed = w.checked_mul(h).and_then(|y| y.checked_add(y / 2));
    check_size("NV12", data, (width, height), needed)?;
    if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        return Err(WebcamError::BadFrame {
            format: "NV12",
            width,
            height,
            reason: "an odd side, but NV12 shares U and V between 2×2 pixels".into(),
        });
    }
    let (luma, chroma) = data.split_at(w * h);
    let mut rgb = vec![0u8; w * h * 3];
    for (y, row) in rgb.chunks_exact_mut(w * 3).enumerate() {
        for (x, out) in row.chunks_exact_mut(3).enumerate() {
            let uv = (y / 2) * w + (x / 2) * 2;
            out.copy_from_slice(&bt601_limited_to_rgb(
                luma[y * w + x],
                chroma[uv],
                chroma[uv + 1],
            ));
        }
    }
    RgbImage::from_raw(width, height, rgb).ok_or(WebcamError::BadFrame {
        format: "NV12",
        width,
        height,
        reason: "the RGB buffer has the wrong size".into(),
    })
}

/// How a packed 8-bit frame holds its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    Gray,
    Rgb,
    Bgr,
}

/// Converts a packed grey, RGB or BGR frame (rows without padding) to RGB.
pub fn packed_to_rgb(
    data: &[u8],
    width: u32,
    height: u32,
    packing: Packing,
) -> Result<RgbImage, WebcamError> {
    let (name, channels) = match packing {
        Packing::Gray => ("grey", 1),
        Packing::Rgb => ("RGB", 3),
        Packing::Bgr => ("BGR", 3),
    };
    let pixels = (width as usize).checked_mul(height as usize);
    check_size(
        name,
        data,
        (width, height),
        pixels.and_then(|p| p.checked_mul(channels)),
    )?;
    let pixels = pixels.unwrap_or(0);
    let rgb: Vec<u8> = match packing {
        Packing::Gray => data[..pixels].iter().flat_map(|&g| [g, g, g]).collect(),
        Packing::Rgb => data[..pixels * 3].to_vec(),
        Packing::Bgr => (data[..pixels * 3].chunks_exact(3))
            .flat_map(|p| [p[2], p[1], p[0]])
            .collect(),
    };
    RgbImage::from_raw(width, height, rgb).ok_or(WebcamError::BadFrame {
        format: name,
        width,
        height,
        reason: "the RGB buffer has the wrong size".into(),
    })
}

/// Decodes an MJPEG frame (a JPEG image) to RGB. Many UVC cameras leave the Huffman tables
/// out of their frames and rely on the standard ones (JPEG Annex K.3, required by the AVI
/// MJPEG format); such a frame gets those tables inserted before decoding.
pub fn mjpeg_to_rgb(data: &[u8]) -> Result<RgbImage, WebcamError> {
    let jpeg = with_default_huffman_tables(data);
    let mut reader = image::ImageReader::with_format(
        std::io::Cursor::new(jpeg.as_ref()),
        image::ImageFormat::Jpeg,
    );
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(512 << 20);
    reader.limits(limits);
    Ok(crate::decode_guard::decode(reader)
        .map_err(WebcamError::Mjpeg)?
        .into_rgb8())
}

/// `jpeg` with the standard Huffman tables inserted after its SOI marker when its first scan
/// starts without any DHT segment; otherwise (tables present, or not a JPEG the walk
/// understands: left to the decoder to report) unchanged.
pub fn with_default_huffman_tables(jpeg: &[u8]) -> Cow<'_, [u8]> {
    if !jpeg.starts_with(&[0xFF, 0xD8]) || !lacks_huffman_tables(jpeg) {
        return Cow::Borrowed(jpeg);
    }
    let mut out = Vec::with_capacity(jpeg.len() + 420);
    out.extend_from_slice(&jpeg[..2]);
    out.extend_from_slice(&default_dht_segment());
    out.extend_from_slice(&jpeg[2..]);
    Cow::Owned(out)
}

/// Whether the marker segments after SOI reach the first scan (SOS) without a DHT.
fn lacks_huffman_tables(jpeg: &[u8]) -> bool {
    let mut i = 2;
    loop {
        // A marker is 0xFF (any number of fill 0xFF bytes) and a code.
        while jpeg.get(i) == Some(&0xFF) && jpeg.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        let (Some(0xFF), Some(&code)) = (jpeg.get(i), jpeg.get(i + 1)) else {
            return false;
        };
        match code {
            0xC4 => return false,         // DHT
            0xDA => return true,          // SOS with no DHT before it
            0xD9 => return false,         // EOI: no scan at all
            0x01 | 0xD0..=0xD7 => i += 2, // markers without a length
            _ => {
                let Some(&[hi, lo]) = jpeg.get(i + 2..i + 4) else {
                    return false;
                };
                let len = usize::from(u16::from_be_bytes([hi, lo]));
                if len < 2 {
                    return false;
                }
                i += 2 + len;
            }
        }
    }
}

// JPEG Annex K.3, tables K.3–K.6: code counts per length 1..=16, then the symbols.
const DC_LUMA_BITS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
const DC_CHROMA_BITS: [u8; 16] = [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
const DC_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
const AC_LUMA_BITS: [u8; 16] = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D];
const AC_LUMA_VALUES: [u8; 162] = [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
    0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52, 0xD1, 0xF0,
    0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
    0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
    0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7,
    0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5,
    0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1, 0xE2,
    0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8,
    0xF9, 0xFA,
];
const AC_CHROMA_BITS: [u8; 16] = [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77];
const AC_CHROMA_VALUES: [u8; 162] = [
    0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71,
    0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09, 0x23, 0x33, 0x52, 0xF0,
    0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25, 0xF1, 0x17, 0x18, 0x19, 0x1A, 0x26,
    0x27, 0x28, 0x29, 0x2A, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
    0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
    0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5,
    0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3,
    0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA,
    0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8,
    0xF9, 0xFA,
];

const fn code_count(bits: &[u8; 16]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < 16 {
        n += bits[i] as usize;
        i += 1;
    }
    n
}
const _: () = assert!(code_count(&DC_LUMA_BITS) == DC_VALUES.len());
const _: () = assert!(code_count(&DC_CHROMA_BITS) == DC_VALUES.len());
const _: () = assert!(code_count(&AC_LUMA_BITS) == AC_LUMA_VALUES.len());
const _: () = assert!(code_count(&AC_CHROMA_BITS) == AC_CHROMA_VALUES.len());

/// One DHT segment with the four standard tables (DC 0/1, AC 0/1): 420 bytes.
fn default_dht_segment() -> Vec<u8> {
    let tables: [(u8, &[u8; 16], &[u8]); 4] = [
        (0x00, &DC_LUMA_BITS, &DC_VALUES),
        (0x01, &DC_CHROMA_BITS, &DC_VALUES),
        (0x10, &AC_LUMA_BITS, &AC_LUMA_VALUES),
        (0x11, &AC_CHROMA_BITS, &AC_CHROMA_VALUES),
    ];
    let len: usize = 2 + tables
        .iter()
        .map(|(_, b, v)| 1 + b.len() + v.len())
        .sum::<usize>();
    let mut seg = vec![0xFF, 0xC4];
    seg.extend_from_slice(&(len as u16).to_be_bytes());
    for (class_id, bits, values) in tables {
        seg.push(class_id);
        seg.extend_from_slice(bits);
        seg.extend_from_slice(values);
    }
    seg
}

#[cfg(test)]
mod tests {
    use super::super::{Frame, FrameFormat};
    use super::*;

    /// One YUYV macropixel (two pixels sharing U and V) per call, as a 2×1 frame.
    fn pair(y0: u8, u: u8, y1: u8, v: u8) -> [[u8; 3]; 2] {
        let img = yuyv_to_rgb(&[y0, u, y1, v], 2, 1, 4).unwrap();
        [img.get_pixel(0, 0).0, img.get_pixel(1, 0).0]
    }

    #[test]
    fn yuyv_black_white_and_grey_are_exact() {
        // Y = 16 is black and Y = 235 white in limited range; U = V = 128 has no colour.
        assert_eq!(pair(16, 128, 235, 128), [[0, 0, 0], [255, 255, 255]]);
        // Below 16 and above 235 clip. 298·(126−16) = 32780; (32780+128)>>8 = 128.
        assert_eq!(pair(0, 128, 255, 128), [[0, 0, 0], [255, 255, 255]]);
        assert_eq!(pair(126, 128, 126, 128)[0], [128, 128, 128]);
    }

    #[test]
    fn yuyv_primaries_match_hand_computed_bt601() {
        // Pure red in BT.601 limited range: Y = 16 + 65.481 = 81, Cb = 128 − 37.797 = 90,
        // Cr = 128 + 112 = 240. With C = 298·65 = 19370, D = −38, E = 112:
        //   R = (19370 + 409·112 + 128) >> 8 = 65306 >> 8 = 255
        //   G = (19370 + 3800 − 23296 + 128) >> 8 = 2 >> 8 = 0
        //   B = (19370 − 19608 + 128) >> 8 = −110 >> 8 → 0
        assert_eq!(pair(81, 90, 81, 240)[0], [255, 0, 0]);
        // Green: Y = 16 + 128.553 = 145, Cb = 128 − 74.203 = 54, Cr = 128 − 93.786 = 34.
        // C = 298·129 = 38442, D = −74, E = −94:
        //   R = (38442 − 38446 + 128) >> 8 = 0
        //   G = (38442 + 7400 + 19552 + 128) >> 8 = 65522 >> 8 = 255
        //   B = (38442 − 38184 + 128) >> 8 = 386 >> 8 = 1 (the rounding of Y, Cb, Cr)
        assert_eq!(pair(145, 54, 145, 34)[0], [0, 255, 1]);
        // Blue: Y = 16 + 24.966 = 41, Cb = 240, Cr = 128 − 18.214 = 110.
        // C = 7450, D = 112, E = −18:
        //   R = (7450 − 7362 + 128) >> 8 = 0
        //   G = (7450 − 11200 + 3744 + 128) >> 8 = 122 >> 8 = 0
        //   B = (7450 + 57792 + 128) >> 8 = 65370 >> 8 = 255
        assert_eq!(pair(41, 240, 41, 110)[0], [0, 0, 255]);
        // The two pixels of a pair share U and V but keep their own Y.
        assert_eq!(pair(16, 128, 235, 128)[1], [255, 255, 255]);
    }

    #[test]
    fn yuyv_rows_skip_the_stride_padding() {
        // 2×2 frame, rows 8 bytes apart (4 bytes of pixels, 4 of padding); the last row
        // ends right after its pixels.
        let data = [
            16, 128, 235, 128, 9, 9, 9, 9, //
            235, 128, 16, 128,
        ];
        let img = yuyv_to_rgb(&data, 2, 2, 8).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(1, 0).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(0, 1).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(1, 1).0, [0, 0, 0]);
        // An odd height is fine (4:2:2 halves only the horizontal chroma resolution).
        assert_eq!(
            yuyv_to_rgb(&data[..4], 2, 1, 8).unwrap().dimensions(),
            (2, 1)
        );
    }

    #[test]
    fn bad_yuyv_frames_are_refused_with_a_reason() {
        let data = [128u8; 64];
        let reason = |r: Result<RgbImage, WebcamError>| match r {
            Err(WebcamError::BadFrame { reason, .. }) => reason,
            other => panic!("expected BadFrame, got {other:?}"),
        };
        assert!(reason(yuyv_to_rgb(&data, 3, 2, 6)).contains("odd"));
        assert!(reason(yuyv_to_rgb(&data, 0, 2, 0)).contains("empty"));
        assert!(reason(yuyv_to_rgb(&data, 4, 2, 6)).contains("stride"));
        // 4×4 packed needs 32 bytes; with a 12-byte stride 3·12 + 8 = 44.
        assert!(reason(yuyv_to_rgb(&data[..40], 4, 4, 12)).contains("needs 44"));
        assert!(yuyv_to_rgb(&data[..44], 4, 4, 12).is_ok());
        let err = yuyv_to_rgb(&data, 3, 2, 6).unwrap_err().to_string();
        assert!(
            err.starts_with("a YUYV frame of 3×2: the width is odd"),
            "{err}"
        );
    }

    /// A JPEG from `image`'s encoder (which writes the standard Annex K tables).
    fn test_jpeg() -> (RgbImage, Vec<u8>) {
        let img = RgbImage::from_fn(48, 32, |x, y| {
            image::Rgb([(x * 5) as u8, (y * 7) as u8, ((x + y) * 3) as u8])
        });
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
            .encode_image(&img)
            .unwrap();
        (img, bytes)
    }

    /// `jpeg` with every DHT segment before the first scan removed, as many UVC cameras
    /// send their MJPEG frames.
    fn strip_huffman_tables(jpeg: &[u8]) -> Vec<u8> {
        let mut out = jpeg[..2].to_vec();
        let mut i = 2;
        while jpeg[i] == 0xFF && jpeg[i + 1] != 0xDA {
            let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
            if jpeg[i + 1] != 0xC4 {
                out.extend_from_slice(&jpeg[i..i + 2 + len]);
            }
            i += 2 + len;
        }
        out.extend_from_slice(&jpeg[i..]);
        out
    }

    #[test]
    fn mjpeg_frames_decode_to_rgb() {
        let (img, jpeg) = test_jpeg();
        let rgb = mjpeg_to_rgb(&jpeg).unwrap();
        assert_eq!(rgb.dimensions(), img.dimensions());
        // Lossy, but close to the original everywhere.
        let worst = rgb
            .as_raw()
            .iter()
            .zip(img.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(worst < 40, "max difference {worst}");
        // With tables present, the frame is passed through untouched.
        assert!(matches!(
            with_default_huffman_tables(&jpeg),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn mjpeg_frames_without_huffman_tables_get_the_standard_ones() {
        let (_, jpeg) = test_jpeg();
        let stripped = strip_huffman_tables(&jpeg);
        assert!(stripped.len() < jpeg.len());
        assert!(!stripped.windows(2).any(|w| w == [0xFF, 0xC4]));
        // The decoder alone cannot read such a frame …
        assert!(image::load_from_memory_with_format(&stripped, image::ImageFormat::Jpeg).is_err());
        // … with the standard tables inserted it decodes to exactly the original's pixels.
        assert_eq!(
            mjpeg_to_rgb(&stripped).unwrap(),
            mjpeg_to_rgb(&jpeg).unwrap()
        );
        let seg = default_dht_segment();
        assert_eq!(seg.len(), 420);
        assert_eq!(&seg[..4], &[0xFF, 0xC4, 0x01, 0xA2]);
    }

    #[test]
    fn broken_mjpeg_frames_are_errors_not_panics() {
        let (_, jpeg) = test_jpeg();
        for bad in [
            &[][..],
            &[0xFF, 0xD8][..],
            &[0xFF, 0xD8, 0xFF, 0xDA][..],
            &b"not a jpeg at all"[..],
            &jpeg[..jpeg.len() / 3],
        ] {
            let err = mjpeg_to_rgb(bad).unwrap_err();
            assert!(matches!(err, WebcamError::Mjpeg(_)), "{err}");
            assert!(err.to_string().starts_with("cannot decode an MJPEG frame"));
        }
    }

    #[test]
    fn frames_convert_by_their_format() {
        let frame = Frame {
            format: FrameFormat::Yuyv {
                width: 2,
                height: 1,
                stride: 4,
            },
            data: vec![16, 128, 235, 128],
        };
        assert_eq!(frame.to_rgb().unwrap().get_pixel(1, 0).0, [255, 255, 255]);
        assert_eq!(frame.format.to_string(), "YUYV 2×1");
        let (img, jpeg) = test_jpeg();
        let frame = Frame {
            format: FrameFormat::Mjpeg {
                width: 48,
                height: 32,
            },
            data: jpeg,
        };
        assert_eq!(frame.to_rgb().unwrap().dimensions(), img.dimensions());
    }

    #[test]
    fn nv12_shares_chroma_over_2x2_blocks() {
        // 2×2 Y plane (black, white, grey, grey), one U V pair: no colour.
        let img = nv12_to_rgb(&[16, 235, 126, 126, 128, 128], 2, 2).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(1, 0).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(0, 1).0, [128, 128, 128]);
        // The same red as YUYV's hand-computed case (Y 81, Cb 90, Cr 240).
        let red = nv12_to_rgb(&[81, 81, 81, 81, 90, 240], 2, 2).unwrap();
        assert_eq!(red.get_pixel(1, 1).0, [255, 0, 0]);
        // Short, odd, empty and huge frames are errors.
        assert!(nv12_to_rgb(&[0; 5], 2, 2).is_err());
        assert!(nv12_to_rgb(&[0; 9], 3, 2).is_err());
        assert!(nv12_to_rgb(&[], 0, 2).is_err());
        assert!(nv12_to_rgb(&[0; 6], 9000, 2).is_err());
    }

    #[test]
    fn packed_frames_keep_or_swap_their_channels() {
        let grey = packed_to_rgb(&[7, 9], 2, 1, Packing::Gray).unwrap();
        assert_eq!(grey.as_raw(), &[7, 7, 7, 9, 9, 9]);
        let rgb = packed_to_rgb(&[1, 2, 3, 4, 5, 6], 2, 1, Packing::Rgb).unwrap();
        assert_eq!(rgb.as_raw(), &[1, 2, 3, 4, 5, 6]);
        let bgr = packed_to_rgb(&[1, 2, 3, 4, 5, 6], 2, 1, Packing::Bgr).unwrap();
        assert_eq!(bgr.as_raw(), &[3, 2, 1, 6, 5, 4]);
        let short = packed_to_rgb(&[1, 2, 3], 2, 1, Packing::Rgb).unwrap_err();
        assert_eq!(
            short.to_string(),
            "a RGB frame of 2×1: 3 bytes, but the frame needs 6"
        );
        // Frames come through `Frame::to_rgb` by their format.
        let frame = Frame {
            format: FrameFormat::Bgr {
                width: 1,
                height: 1,
            },
            data: vec![10, 20, 30],
        };
        assert_eq!(frame.to_rgb().unwrap().as_raw(), &[30, 20, 10]);
    }
}
