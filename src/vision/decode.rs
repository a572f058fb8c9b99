//! Decoding untrusted image bytes with bounded dimensions and memory.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    #[error("the image is empty (0 bytes)")]
    Empty,
    #[error("unsupported or unrecognised image format (accepted: JPEG, PNG, WebP, GIF, BMP, TIFF)")]
    UnsupportedFormat,
    #[error(
        "the image is {width}x{height} pixels; at most {max_side} per side and {max_pixels} in all are accepted"
    )]
    TooLarge {
        width: u32,
        height: u32,
        max_side: u32,
        max_pixels: u64,
    },
    #[error(
        "the image is {width}x{height} pixels; sides more than {max_aspect} times apart are not accepted (resized, the short side would vanish)"
    )]
    ExtremeAspect {
        width: u32,
        height: u32,
        max_aspect: u32,
    },
    #[error("the image could not be decoded: {0}")]
    Corrupt(String),
    #[error("decoding the image would need more than {0} bytes of memory")]
    TooMuchMemory(u64),
}

/// Bounds on what a decode may cost (a decompression bomb is refused, not decoded).
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    pub max_side: u32,
    pub max_pixels: u64,
    pub max_alloc: u64,
    /// Long side / short side at most this: at 64 the resized short side keeps >= 21
    /// pixels (the long side is capped at 1333); a 1x8192 strip would resize to nothing.
    pub max_aspect: u32,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_side: 8192,
            max_pixels: 40_000_000,
            max_alloc: 512 << 20,
            max_aspect: 64,
        }
    }
}

/// The JPEG decoder fills a truncated scan with grey instead of failing; a cut-off upload
/// must be an error. Entropy-coded data cannot contain 0xFFD9 (0xFF is byte-stuffed), so a
/// complete file has an end-of-image marker after its last start-of-scan.
fn check_jpeg_complete(bytes: &[u8]) -> Result<(), VisionError> {
    let find_last = |marker: [u8; 2]| bytes.windows(2).rposition(|w| w == marker);
    match (find_last([0xFF, 0xDA]), find_last([0xFF, 0xD9])) {
        (Some(sos), Some(eoi)) if eoi > sos => Ok(()),
        _ => Err(VisionError::Corrupt(
            "truncated JPEG (no end-of-image marker after the image data)".into(),
        )),
    }
}

/// How an image file says it is to be shown: its EXIF orientation (1: as stored; 2 to 8:
/// mirrored and/or turned), read from the header; 1 when it has none or it cannot be read.
pub fn exif_orientation(bytes: &[u8]) -> u8 {
    ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()
        .and_then(|reader| reader.into_decoder().ok())
        .and_then(|mut decoder| decoder.orientation().ok())
        .map_or(1, Orientation::to_exif)
}

/// A decoded image turned and mirrored the way its EXIF `orientation` says it is shown
/// (phone cameras store pixels as the sensor reads them and set this tag).
pub fn orient(image: RgbImage, orientation: u8) -> RgbImage {
    match Orientation::from_exif(orientation) {
        Some(Orientation::NoTransforms) | None => image,
        Some(o) => {
            let mut turned = DynamicImage::ImageRgb8(image);
            turned.apply_orientation(o);
            turned.into_rgb8()
        }
    }
}

/// Checks format and size from the header alone (no pixel is decoded) and returns the
/// image's `(width, height)`: what a decode will cost is known before it starts.
pub fn probe(bytes: &[u8], limits: DecodeLimits) -> Result<(u32, u32), VisionError> {
    if bytes.is_empty() {
        return Err(VisionError::Empty);
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| VisionError::Corrupt(e.to_string()))?;
    match reader.format() {
        Some(ImageFormat::Jpeg) => check_jpeg_complete(bytes)?,
        Some(
            ImageFormat::Png
            | ImageFormat::WebP
            | ImageFormat::Gif
            | ImageFormat::Bmp
            | ImageFormat::Tiff,
        ) => {}
        _ => return Err(VisionError::UnsupportedFormat),
    }
    // Read the header first so the size check costs nothing.
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| VisionError::Corrupt(e.to_string()))?;
    if width > limits.max_side
        || height > limits.max_side
        || u64::from(width) * u64::from(height) > limits.max_pixels
    {
        return Err(VisionError::TooLarge {
            width,
            height,
            max_side: limits.max_side,
            max_pixels: limits.max_pixels,
        });
    }
    let (long, short) = (width.max(height), width.min(height));
    if short == 0 || u64::from(long) > u64::from(short) * u64::from(limits.max_aspect) {
        return Err(VisionError::ExtremeAspect {
            width,
            height,
            max_aspect: limits.max_aspect,
        });
    }
    Ok((width, height))
}

/// Decodes JPEG, PNG or WebP bytes to 8-bit RGB: the pixels
/// `Image.open(path).convert("RGB")` gives in Pillow (HOICLIP's loaders). GIF (its first
/// frame), BMP and TIFF decode too, through the image crate, within the same limits.
pub fn decode(bytes: &[u8], limits: DecodeLimits) -> Result<RgbImage, VisionError> {
    let (width, height) = probe(bytes, limits)?;
    if image::guess_format(bytes).ok() == Some(ImageFormat::Jpeg) {
        return super::jpeg::decode_jpeg(bytes, width, height, limits);
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| VisionError::Corrupt(e.to_string()))?;
    let mut l = Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    l.max_alloc = Some(limits.max_alloc);
    reader.limits(l);
    let image = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => VisionError::TooMuchMemory(limits.max_alloc),
        other => VisionError::Corrupt(other.to_string()),
    })?;
    Ok(image.to_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3x2 image whose pixels are numbered 0..6 row by row (in the red channel).
    fn numbered() -> RgbImage {
        RgbImage::from_fn(3, 2, |x, y| image::Rgb([(y * 3 + x) as u8, 0, 0]))
    }

    fn rows(image: &RgbImage) -> Vec<Vec<u8>> {
        (0..image.height())
            .map(|y| {
                (0..image.width())
                    .map(|x| image.get_pixel(x, y)[0])
                    .collect()
            })
            .collect()
    }

    #[test]
    fn every_exif_orientation_turns_as_viewers_show_it() {
        // Stored 0 1 2 / 3 4 5; what a viewer shows for each tag.
        let shown: [(u8, Vec<Vec<u8>>); 8] = [
            (1, vec![vec![0, 1, 2], vec![3, 4, 5]]),
            (2, vec![vec![2, 1, 0], vec![5, 4, 3]]),
            (3, vec![vec![5, 4, 3], vec![2, 1, 0]]),
            (4, vec![vec![3, 4, 5], vec![0, 1, 2]]),
            (5, vec![vec![0, 3], vec![1, 4], vec![2, 5]]),
            (6, vec![vec![3, 0], vec![4, 1], vec![5, 2]]),
            (7, vec![vec![5, 2], vec![4, 1], vec![3, 0]]),
            (8, vec![vec![2, 5], vec![1, 4], vec![0, 3]]),
        ];
        for (tag, expected) in shown {
            assert_eq!(
                rows(&orient(numbered(), tag)),
                expected,
                "orientation {tag}"
            );
        }
        // Out-of-range tags leave the image as stored.
        assert_eq!(rows(&orient(numbered(), 0)), rows(&numbered()));
        assert_eq!(rows(&orient(numbered(), 9)), rows(&numbered()));
    }

    #[test]
    fn files_without_exif_are_as_stored() {
        let mut png = Cursor::new(Vec::new());
        numbered()
            .write_to(&mut png, ImageFormat::Png)
            .expect("encode");
        assert_eq!(exif_orientation(png.get_ref()), 1);
        assert_eq!(exif_orientation(b"not an image"), 1);
    }
}
