//! The input pipeline on every supported container and pixel layout: PNG (grey, grey+alpha,
//! RGBA, 16-bit), JPEG, WebP, BMP, TIFF, GIF, and `.npy` tensors; plus the fit modes.

use convlens::model::preprocess::{Fit, InputSpec, load_input};
use image::{DynamicImage, ImageBuffer, Luma, LumaA, Rgb, Rgba};

fn spec(fit: Fit) -> InputSpec {
    InputSpec {
        size_hw: [16, 16],
        mean: [0.5; 3],
        std: [0.25; 3],
        fit,
    }
}

/// A 20×12 gradient in each pixel layout, as the 8-bit RGB it should become.
fn gradient_rgb() -> image::RgbImage {
    ImageBuffer::from_fn(20, 12, |x, y| Rgb([(x * 12) as u8, (y * 20) as u8, 100]))
}

#[test]
fn every_format_and_layout_becomes_the_same_rgb_tensor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rgb = gradient_rgb();
    let reference = convlens::model::preprocess::image_to_input(&rgb, &spec(Fit::Stretch));
    // Lossless containers of the same RGB pixels give exactly the same tensor.
    for ext in ["png", "bmp", "tiff", "webp"] {
        let path = dir.path().join(format!("rgb.{ext}"));
        DynamicImage::ImageRgb8(rgb.clone())
            .save(&path)
            .expect("save");
        let t = load_input(&path, &spec(Fit::Stretch)).unwrap_or_else(|e| panic!("{ext}: {e}"));
        assert_eq!(t.shape, [1, 3, 16, 16]);
        assert_eq!(t.data, reference.data, "{ext}");
    }
    // 16-bit PNG: the top byte of each sample is the 8-bit value.
    let wide: ImageBuffer<Rgb<u16>, Vec<u16>> = ImageBuffer::from_fn(20, 12, |x, y| {
        let p = rgb.get_pixel(x, y).0;
        Rgb([
            u16::from(p[0]) * 257,
            u16::from(p[1]) * 257,
            u16::from(p[2]) * 257,
        ])
    });
    let path = dir.path().join("rgb16.png");
    DynamicImage::ImageRgb16(wide).save(&path).expect("save");
    assert_eq!(
        load_input(&path, &spec(Fit::Stretch)).expect("16-bit").data,
        reference.data
    );
    // RGBA: alpha is dropped.
    let rgba: ImageBuffer<Rgba<u8>, Vec<u8>> = ImageBuffer::from_fn(20, 12, |x, y| {
        let p = rgb.get_pixel(x, y).0;
        Rgba([p[0], p[1], p[2], 7])
    });
    let path = dir.path().join("rgba.png");
    DynamicImage::ImageRgba8(rgba).save(&path).expect("save");
    assert_eq!(
        load_input(&path, &spec(Fit::Stretch)).expect("rgba").data,
        reference.data
    );
    // Lossy JPEG: close, not equal.
    let path = dir.path().join("rgb.jpg");
    DynamicImage::ImageRgb8(rgb.clone())
        .save(&path)
        .expect("save");
    let jpeg = load_input(&path, &spec(Fit::Stretch)).expect("jpeg");
    let mean_err = jpeg
        .data
        .iter()
        .zip(&reference.data)
        .map(|(a, b)| (a - b).abs())
        .sum::<f32>()
        / jpeg.data.len() as f32;
    assert!(mean_err < 0.1, "jpeg differs by {mean_err} on average");
}

#[test]
fn grey_images_fill_all_three_channels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let grey: ImageBuffer<Luma<u8>, Vec<u8>> =
        ImageBuffer::from_fn(16, 16, |x, y| Luma([(x * 16 + y) as u8]));
    let grey_alpha: ImageBuffer<LumaA<u8>, Vec<u8>> =
        ImageBuffer::from_fn(16, 16, |x, y| LumaA([(x * 16 + y) as u8, 200]));
    for (name, img) in [
        ("grey.png", DynamicImage::ImageLuma8(grey)),
        ("grey_alpha.png", DynamicImage::ImageLumaA8(grey_alpha)),
        (
            "grey.gif",
            DynamicImage::ImageRgba8(ImageBuffer::from_fn(16, 16, |x, _| {
                Rgba([(x * 16) as u8, (x * 16) as u8, (x * 16) as u8, 255])
            })),
        ),
    ] {
        let path = dir.path().join(name);
        img.save(&path).expect("save");
        let t = load_input(&path, &spec(Fit::Crop)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let plane = 16 * 16;
        assert_eq!(&t.data[..plane], &t.data[plane..2 * plane], "{name}: R = G");
        assert_eq!(&t.data[..plane], &t.data[2 * plane..], "{name}: R = B");
        // Already at the model's size: no resampling, the formula exactly.
        if name == "grey.png" {
            let v = (f32::from((3 * 16 + 5) as u8) / 255.0 - 0.5) / 0.25;
            assert_eq!(t.data[5 * 16 + 3], v, "pixel (x=3, y=5)");
        }
    }
}

#[test]
fn npy_inputs_are_used_as_they_are_and_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data: Vec<f32> = (0..3 * 16 * 16).map(|i| i as f32 * 0.01 - 3.0).collect();
    for shape in [vec![1, 3, 16, 16], vec![3, 16, 16]] {
        let path = dir.path().join(format!("x{}.npy", shape.len()));
        std::fs::write(&path, convlens::npy::to_bytes(&shape, &data)).expect("write");
        let t = load_input(&path, &spec(Fit::Crop)).expect("npy");
        assert_eq!(t.data, data);
    }
    let wrong = dir.path().join("wrong.npy");
    std::fs::write(&wrong, convlens::npy::to_bytes(&[3, 8, 8], &data[..192])).expect("write");
    let err = load_input(&wrong, &spec(Fit::Crop))
        .expect_err("wrong shape")
        .to_string();
    assert!(
        err.contains("[3, 8, 8]") && err.contains("wrong.npy"),
        "{err}"
    );
}

#[test]
fn tiny_and_non_image_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = dir.path().join("one.png");
    DynamicImage::ImageRgb8(ImageBuffer::from_pixel(1, 1, Rgb([10, 20, 30])))
        .save(&one)
        .expect("save");
    for fit in [Fit::Crop, Fit::Stretch, Fit::Pad] {
        let t = load_input(&one, &spec(fit)).expect("1×1 image");
        assert!(t.data.iter().all(|v| v.is_finite()));
    }
    let text = dir.path().join("notes.jpg");
    std::fs::write(&text, b"not an image").expect("write");
    let err = load_input(&text, &spec(Fit::Crop))
        .expect_err("not an image")
        .to_string();
    assert!(err.contains("notes.jpg"), "{err}");
    let missing = load_input(&dir.path().join("missing.png"), &spec(Fit::Crop))
        .expect_err("missing")
        .to_string();
    assert!(missing.contains("missing.png"), "{missing}");
}
