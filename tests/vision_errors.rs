//! Untrusted image bytes: every bad input is a typed error, never a panic or an OOM.

use std::io::Cursor;

mod common;

use common::png_claiming;
use hoiclip::vision::{DecodeLimits, VisionError, decode};

fn png_bytes(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb([10, 200, 30]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn jpeg_bytes(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 5) as u8, 90]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

#[test]
fn valid_png_and_jpeg_decode() {
    let img = decode(&png_bytes(31, 17), DecodeLimits::default()).unwrap();
    assert_eq!(img.dimensions(), (31, 17));
    assert_eq!(img.get_pixel(3, 3).0, [10, 200, 30]);
    let img = decode(&jpeg_bytes(40, 24), DecodeLimits::default()).unwrap();
    assert_eq!(img.dimensions(), (40, 24));
}

#[test]
fn empty_input() {
    assert!(matches!(
        decode(&[], DecodeLimits::default()),
        Err(VisionError::Empty)
    ));
}

#[test]
fn unsupported_formats() {
    for bytes in [
        b"P6\n1 1\n255\n\0\0\0".to_vec(),
        b"hello, I am text".to_vec(),
    ] {
        let err = decode(&bytes, DecodeLimits::default()).unwrap_err();
        assert!(matches!(err, VisionError::UnsupportedFormat), "{err:?}");
    }
    // Accepted formats with broken contents are corrupt, not unsupported.
    let bmp = [b"BM".to_vec(), vec![0u8; 60]].concat();
    for bytes in [bmp, b"GIF89a........".to_vec()] {
        let err = decode(&bytes, DecodeLimits::default()).unwrap_err();
        assert!(matches!(err, VisionError::Corrupt(_)), "{err:?}");
    }
}

#[test]
fn truncated_images_are_corrupt() {
    for full in [png_bytes(64, 64), jpeg_bytes(64, 64)] {
        let err = decode(&full[..full.len() / 2], DecodeLimits::default()).unwrap_err();
        assert!(matches!(err, VisionError::Corrupt(_)), "{err:?}");
    }
}

#[test]
fn decompression_bomb_is_refused_from_its_header() {
    let err = decode(&png_claiming(60_000, 60_000), DecodeLimits::default()).unwrap_err();
    assert!(
        matches!(
            err,
            VisionError::TooLarge {
                width: 60_000,
                height: 60_000,
                ..
            }
        ),
        "{err:?}"
    );
    // Within each side's limit but over the pixel budget.
    let limits = DecodeLimits {
        max_side: 8192,
        max_pixels: 1_000_000,
        max_alloc: 1 << 30,
        ..DecodeLimits::default()
    };
    let err = decode(&png_claiming(2000, 2000), limits).unwrap_err();
    assert!(matches!(err, VisionError::TooLarge { .. }), "{err:?}");
}

#[test]
fn memory_budget_is_enforced() {
    let limits = DecodeLimits {
        max_side: 8192,
        max_pixels: 100_000_000,
        max_alloc: 100_000,
        ..DecodeLimits::default()
    };
    let err = decode(&png_bytes(400, 400), limits).unwrap_err();
    assert!(matches!(err, VisionError::TooMuchMemory(_)), "{err:?}");
}

#[test]
fn strips_too_thin_to_resize_are_refused() {
    // 1x8192 would resize to 0x1333 for the detector. The limit is a 64:1 aspect ratio.
    let err = decode(&png_bytes(1, 65), DecodeLimits::default()).unwrap_err();
    assert!(
        matches!(
            err,
            VisionError::ExtremeAspect {
                width: 1,
                height: 65,
                max_aspect: 64
            }
        ),
        "{err:?}"
    );
    let err = decode(&png_bytes(8192, 2), DecodeLimits::default()).unwrap_err();
    assert!(matches!(err, VisionError::ExtremeAspect { .. }), "{err:?}");
    // Exactly 64:1 is still accepted.
    let img = decode(&png_bytes(64, 1), DecodeLimits::default()).unwrap();
    assert_eq!(img.dimensions(), (64, 1));
}
