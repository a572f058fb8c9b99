//! JPEG as Pillow decodes it: libjpeg-turbo (the decoder Pillow ships) through its
//! TurboJPEG API, with Pillow's settings and colour conversions.

use image::RgbImage;
use turbojpeg_sys as raw;

use super::decode::{DecodeLimits, VisionError};

/// Progressive scans a JPEG may have: a crafted file with thousands of tiny scans would
/// otherwise cost seconds of CPU (libjpeg-turbo's own advice for untrusted input).
const MAX_JPEG_SCANS: u32 = 500;

/// JPEG through libjpeg-turbo with Pillow's settings: accurate integer IDCT and fancy
/// upsampling (TurboJPEG's defaults too), greyscale replicated to RGB, CMYK read as Adobe
/// writes it (inverted) and converted as Pillow's `convert("RGB")` does. Like Pillow,
/// decoding goes on through libjpeg's warnings (e.g. extraneous bytes before a marker,
/// common in camera files); only a fatal error refuses the file.
pub(super) fn decode_jpeg(
    bytes: &[u8],
    width: u32,
    height: u32,
    limits: DecodeLimits,
) -> Result<RgbImage, VisionError> {
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

/// A TurboJPEG decompressor. Safe wrappers (the `turbojpeg` crate's) turn libjpeg's
/// warnings into errors, which would refuse files Pillow decodes; this one tells a
/// warning (decoding went on) from a fatal error.
struct TurboJpeg(raw::tjhandle);

impl TurboJpeg {
    fn new() -> Result<Self, VisionError> {
        // SAFETY: plain constructor; a null handle is checked below.
        let handle = unsafe { raw::tj3Init(raw::TJINIT_TJINIT_DECOMPRESS as i32) };
        if handle.is_null() {
            return Err(VisionError::Corrupt("cannot start the JPEG decoder".into()));
        }
        Ok(Self(handle))
    }

    fn set(&self, param: raw::TJPARAM, value: i32) -> Result<(), VisionError> {
        // SAFETY: the handle is valid for self's lifetime.
        let status = unsafe { raw::tj3Set(self.0, param as i32, value) };
        self.check(status)
    }

    fn get(&self, param: raw::TJPARAM) -> i32 {
        // SAFETY: the handle is valid for self's lifetime.
        unsafe { raw::tj3Get(self.0, param as i32) }
    }

    fn read_header(&self, jpeg: &[u8]) -> Result<(), VisionError> {
        // SAFETY: the pointer and length describe `jpeg`, borrowed for the call.
        let status = unsafe { raw::tj3DecompressHeader(self.0, jpeg.as_ptr(), jpeg.len() as _) };
        self.check(status)
    }

    /// Decodes into `out`, `pitch` bytes a row, in `format` (its size was computed from
    /// the header this handle read).
    fn decompress(
        &self,
        jpeg: &[u8],
        out: &mut [u8],
        pitch: usize,
        format: raw::TJPF,
    ) -> Result<(), VisionError> {
        let height = usize::try_from(self.get(raw::TJPARAM_TJPARAM_JPEGHEIGHT))
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
            raw::tj3Decompress8(
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
            let code = raw::tj3GetErrorCode(self.0);
            let text = std::ffi::CStr::from_ptr(raw::tj3GetErrorStr(self.0));
            (code, text.to_string_lossy().into_owned())
        };
        if code == raw::TJERR_TJERR_WARNING as i32 {
            return Ok(());
        }
        Err(VisionError::Corrupt(message))
    }
}

impl Drop for TurboJpeg {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { raw::tj3Destroy(self.0) }
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
