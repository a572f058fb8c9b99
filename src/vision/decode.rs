//! Decoding untrusted image bytes with bounded dimensions and memory.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits, RgbImage};

#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    #[error("the image is empty (0 bytes)")]
    Empty,
    #[error("unsupported or unrecognised image format (expected JPEG, PNG or WebP)")]
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
        Some(ImageFormat::Png | ImageFormat::WebP) => {}
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
/// `Image.open(path).convert("RGB")` gives in Pillow (HOICLIP's loaders).
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
