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
        return decode_jpeg(bytes, width, height, limits);
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

/// Progressive scans a JPEG may have: a crafted file with thousands of tiny scans would
/// otherwise cost seconds of CPU (libjpeg-turbo's own advice for untrusted input).
const MAX_JPEG_SCANS: u32 = 500;

/// JPEG through libjpeg-turbo with Pillow's settings: accurate integer IDCT and fancy
/// upsampling (TurboJPEG's defaults too), greyscale replicated to RGB, CMYK read as Adobe
/// writes it (inverted) and converted as Pillow's `convert("RGB")` does. Like Pillow,
/// decoding goes on through libjpeg's warnings (e.g. extraneous bytes before a marker,
/// common in camera files); only a fatal error refuses the file.
fn decode_jpeg(
    bytes: &[u8],
    width: u32,
    height: u32,
    limits: DecodeLimits,
) -> Result<RgbImage, VisionError> {
    use turbojpeg::raw;
    let decoder = TurboJpeg::new()?;
    decoder.set(raw::TJPARAM_TJPARAM_SCANLIMIT, MAX_JPEG_SCANS as i32)?;
    // libjpeg's own buffers (progressive coefficients), in megabytes.
    let max_mb = i32::try_from((limits.max_alloc >> 20).max(1)).unwrap_or(i32::MAX);
    decoder.set(raw::TJPARAM_TJPARAM_MAXMEMORY, max_mb)?;
    decoder.read_header(bytes)?;
    let header = (
        decoder.get(raw::TJPARAM_TJPARAM_JPEGWIDTH),
        decoder.get(raw::TJPARAM_TJPARAM_JPEGHEIGHT),
    );
    if header != (width as i32, height as i32) {
        return Err(VisionError::Corrupt(format!(
            "the JPEG header says {}x{}, its frame {width}x{height}",
            header.0, header.1
        )));
    }
    let colorspace = decoder.get(raw::TJPARAM_TJPARAM_COLORSPACE);
    let cmyk = colorspace == raw::TJCS_TJCS_CMYK as i32 || colorspace == raw::TJCS_TJCS_YCCK as i32;
    let (format, channels) = if cmyk {
        (raw::TJPF_TJPF_CMYK, 4usize)
    } else {
        (raw::TJPF_TJPF_RGB, 3usize)
    };
    let bytes_needed = u64::from(width) * u64::from(height) * channels as u64;
    if bytes_needed > limits.max_alloc {
        return Err(VisionError::TooMuchMemory(limits.max_alloc));
    }
    let mut pixels = vec![0u8; bytes_needed as usize];
    decoder.decompress(bytes, &mut pixels, width as usize * channels, format)?;
    if cmyk {
        // In place: pixel i's RGB goes where its CMYK was read from or earlier.
        for i in 0..(width as usize * height as usize) {
            let rgb = adobe_cmyk_to_rgb(&pixels[4 * i..4 * i + 4]);
            pixels[3 * i..3 * i + 3].copy_from_slice(&rgb);
        }
        pixels.truncate(width as usize * height as usize * 3);
    }
    RgbImage::from_raw(width, height, pixels)
        .ok_or_else(|| VisionError::Corrupt("decoded JPEG has the wrong size".into()))
}

/// A TurboJPEG decompressor. The `turbojpeg` crate's safe wrapper turns libjpeg's
/// warnings into errors, which would refuse files Pillow decodes; this one tells a
/// warning (decoding went on) from a fatal error.
struct TurboJpeg(turbojpeg::raw::tjhandle);

impl TurboJpeg {
    fn new() -> Result<Self, VisionError> {
        // SAFETY: plain constructor; a null handle is checked below.
        let handle =
            unsafe { turbojpeg::raw::tj3Init(turbojpeg::raw::TJINIT_TJINIT_DECOMPRESS as i32) };
        if handle.is_null() {
            return Err(VisionError::Corrupt("cannot start the JPEG decoder".into()));
        }
        Ok(Self(handle))
    }

    fn set(&self, param: turbojpeg::raw::TJPARAM, value: i32) -> Result<(), VisionError> {
        // SAFETY: the handle is valid for self's lifetime.
        let status = unsafe { turbojpeg::raw::tj3Set(self.0, param as i32, value) };
        self.check(status)
    }

    fn get(&self, param: turbojpeg::raw::TJPARAM) -> i32 {
        // SAFETY: the handle is valid for self's lifetime.
        unsafe { turbojpeg::raw::tj3Get(self.0, param as i32) }
    }

    fn read_header(&self, jpeg: &[u8]) -> Result<(), VisionError> {
        // SAFETY: the pointer and length describe `jpeg`, borrowed for the call.
        let status =
            unsafe { turbojpeg::raw::tj3DecompressHeader(self.0, jpeg.as_ptr(), jpeg.len() as _) };
        self.check(status)
    }

    /// Decodes into `out`, `pitch` bytes a row, in `format` (its size was computed from
    /// the header this handle read).
    fn decompress(
        &self,
        jpeg: &[u8],
        out: &mut [u8],
        pitch: usize,
        format: turbojpeg::raw::TJPF,
    ) -> Result<(), VisionError> {
        let height = usize::try_from(self.get(turbojpeg::raw::TJPARAM_TJPARAM_JPEGHEIGHT))
            .map_err(|_| VisionError::Corrupt("bad JPEG height".into()))?;
        if pitch.checked_mul(height) != Some(out.len()) {
            return Err(VisionError::Corrupt(
                "output buffer does not fit the JPEG".into(),
            ));
        }
        let pitch =
            i32::try_from(pitch).map_err(|_| VisionError::Corrupt("JPEG rows too long".into()))?;
        // SAFETY: `out` holds `height` rows of `pitch` bytes, as the header read by this
        // handle describes; `jpeg` is borrowed for the call.
        let status = unsafe {
            turbojpeg::raw::tj3Decompress8(
                self.0,
                jpeg.as_ptr(),
                jpeg.len() as _,
                out.as_mut_ptr(),
                pitch,
                format,
            )
        };
        self.check(status)
    }

    /// Success, or a warning (libjpeg went on, as Pillow does); a fatal error refuses.
    fn check(&self, status: i32) -> Result<(), VisionError> {
        if status == 0 {
            return Ok(());
        }
        // SAFETY: the handle is valid; the error string is owned by it and copied here.
        let (code, message) = unsafe {
            let code = turbojpeg::raw::tj3GetErrorCode(self.0);
            let text = std::ffi::CStr::from_ptr(turbojpeg::raw::tj3GetErrorStr(self.0));
            (code, text.to_string_lossy().into_owned())
        };
        if code == turbojpeg::raw::TJERR_TJERR_WARNING as i32 {
            return Ok(());
        }
        Err(VisionError::Corrupt(message))
    }
}

impl Drop for TurboJpeg {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { turbojpeg::raw::tj3Destroy(self.0) }
    }
}

/// One CMYK pixel as stored by Adobe (inverted), to RGB as Pillow converts it:
/// `x = 255 - k`, `channel = x - round(c * x / 255)`.
fn adobe_cmyk_to_rgb(stored: &[u8]) -> [u8; 3] {
    let [c, m, y, k] = [0, 1, 2, 3].map(|i| 255 - i32::from(stored[i]));
    let nk = 255 - k;
    let channel = |v: i32| {
        let t = v * nk + 128;
        (nk - (((t >> 8) + t) >> 8)).clamp(0, 255) as u8
    };
    [channel(c), channel(m), channel(y)]
}
