//! JPEG pixels exactly as Pillow decodes them (`Image.open(f).convert("RGB")`, the way
//! HOICLIP's loaders read images): zero differing pixels on every case of
//! tests/fixtures/make_jpeg.py (baseline 4:2:0 / 4:2:2 / 4:4:4, progressive, odd sizes,
//! greyscale, Adobe CMYK, restart markers, EXIF orientation, a photo-like image, junk
//! bytes before a marker: a libjpeg warning that must not refuse the file).

mod common;

use common::fixture;
use hoiclip::vision::{DecodeLimits, decode};

const CASES: &[&str] = &[
    "baseline_420",
    "baseline_422",
    "baseline_444",
    "progressive_420",
    "odd_size_420",
    "odd_size_422",
    "grey",
    "cmyk",
    "restart_markers",
    "exif_orientation",
    "photo_q75",
    "extraneous_bytes",
];

#[test]
fn every_case_decodes_to_pillows_pixels() {
    let mut report = Vec::new();
    for case in CASES {
        let jpeg = std::fs::read(fixture(&format!("jpeg/{case}.jpg"))).unwrap();
        let ours = decode(&jpeg, DecodeLimits::default()).unwrap();
        // The reference pixels are a PNG, decoded losslessly.
        let png = std::fs::read(fixture(&format!("jpeg/{case}.png"))).unwrap();
        let pillow = decode(&png, DecodeLimits::default()).unwrap();
        assert_eq!(ours.dimensions(), pillow.dimensions(), "{case}: size");
        let differing = ours
            .pixels()
            .zip(pillow.pixels())
            .filter(|(a, b)| a != b)
            .count();
        let worst = ours
            .as_raw()
            .iter()
            .zip(pillow.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap_or(0);
        if differing > 0 {
            report.push(format!(
                "{case}: {differing} pixels differ, by up to {worst}"
            ));
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
}

#[test]
fn a_broken_jpeg_is_refused_not_decoded_to_grey() {
    let jpeg = std::fs::read(fixture("jpeg/photo_q75.jpg")).unwrap();
    // Cut inside the scan (the end-of-image marker goes with it).
    let cut = &jpeg[..jpeg.len() / 2];
    assert!(decode(cut, DecodeLimits::default()).is_err());
    // Header intact, scan data replaced by garbage up to a late end-of-image marker.
    let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    let mut garbage = jpeg[..sos].to_vec();
    garbage.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x02]);
    garbage.extend(std::iter::repeat_n(0x5Au8, 64));
    garbage.extend_from_slice(&[0xFF, 0xD9]);
    assert!(decode(&garbage, DecodeLimits::default()).is_err());
}
