//! JPEG as Pillow decodes it: libjpeg-turbo's decoder (what Pillow ships; here as built
//! by the `mozjpeg-sys` crate from its sources with the `cc` crate, so no cmake is needed,
//! with SIMD where `nasm` is installed and plain C otherwise: the same pixels either way
//! for the accurate integer IDCT and fancy upsampling Pillow uses), through libjpeg's own
//! API as Pillow calls it, with Pillow's settings and colour conversions.

use std::ffi::{c_int, c_long, c_ulong};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use image::RgbImage;
use mozjpeg_sys as jpeg;

use super::decode::{DecodeLimits, VisionError};

/// Progressive scans a JPEG may have: a crafted file with thousands of tiny scans would
/// otherwise cost seconds of CPU (libjpeg-turbo's own advice for untrusted input).
const MAX_JPEG_SCANS: c_int = 500;

/// libjpeg's longest message, NUL included (`JMSG_LENGTH_MAX` in jpeglib.h).
const JMSG_LENGTH_MAX: usize = 200;

/// Why libjpeg stopped, carried out of its error handler by unwinding (libjpeg's handlers
/// must not return; `resume_unwind` runs no panic hook, so nothing is printed).
struct Fatal(String);

/// libjpeg's fatal-error handler: its message, unwound to [`decode_jpeg`].
unsafe extern "C-unwind" fn fatal(cinfo: &mut jpeg::jpeg_common_struct) {
    let mut buffer = [0u8; JMSG_LENGTH_MAX];
    // SAFETY: `err` is the error manager `decode_jpeg` set up with `jpeg_std_error`, whose
    // `format_message` writes at most JMSG_LENGTH_MAX bytes (NUL included) to its buffer
    // argument; the bindings declare that argument as a shared array reference, so it is
    // called through the same ABI with a plain pointer to a buffer we own.
    let message = unsafe {
        match (*cinfo.err).format_message {
            Some(format) => {
                let format: unsafe extern "C-unwind" fn(&mut jpeg::jpeg_common_struct, *mut u8) =
                    std::mem::transmute(format);
                format(cinfo, buffer.as_mut_ptr());
                let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
                String::from_utf8_lossy(&buffer[..end]).into_owned()
            }
            None => "the JPEG decoder stopped".to_string(),
        }
    };
    resume_unwind(Box::new(Fatal(message)));
}

/// Warnings are counted, not printed: like Pillow, decoding goes on through them.
unsafe extern "C-unwind" fn quiet(cinfo: &mut jpeg::jpeg_common_struct, level: c_int) {
    if level < 0 {
        // SAFETY: `err` is the error manager set up by `decode_jpeg`.
        unsafe { (*cinfo.err).num_warnings += 1 };
    }
}

unsafe extern "C-unwind" fn silent(_: &mut jpeg::jpeg_common_struct) {}

/// Stops a progressive file past [`MAX_JPEG_SCANS`] scans.
unsafe extern "C-unwind" fn limit_scans(cinfo: &mut jpeg::jpeg_common_struct) {
    // SAFETY: this monitor is only installed on a decompressor, whose common fields are
    // the first member of `jpeg_decompress_struct`.
    let scans =
        unsafe { (*(cinfo as *mut _ as *mut jpeg::jpeg_decompress_struct)).input_scan_number };
    if scans > MAX_JPEG_SCANS {
        resume_unwind(Box::new(Fatal(format!(
            "progressive JPEG with more than {MAX_JPEG_SCANS} scans"
        ))));
    }
}

/// JPEG through libjpeg-turbo with Pillow's settings: accurate integer IDCT and fancy
/// upsampling, greyscale replicated to RGB, CMYK read as Adobe writes it (inverted) and
/// converted as Pillow's `convert("RGB")` does. Like Pillow, decoding goes on through
/// libjpeg's warnings (e.g. extraneous bytes before a marker, common in camera files);
/// only a fatal error refuses the file.
pub(super) fn decode_jpeg(
    bytes: &[u8],
    width: u32,
    height: u32,
    limits: DecodeLimits,
) -> Result<RgbImage, VisionError> {
    // SAFETY: plain C structs that libjpeg initialises (`jpeg_std_error`,
    // `jpeg_create_decompress`) before reading them.
    let mut err: jpeg::jpeg_error_mgr = unsafe { std::mem::zeroed() };
    let mut cinfo: jpeg::jpeg_decompress_struct = unsafe { std::mem::zeroed() };
    let mut progress = jpeg::jpeg_progress_mgr {
        progress_monitor: Some(limit_scans),
        pass_counter: 0,
        pass_limit: 0,
        completed_passes: 0,
        total_passes: 0,
    };
    // SAFETY: `err` outlives `cinfo`'s use below; the handlers never return normally
    // from a fatal error (they unwind, caught here).
    unsafe { jpeg::jpeg_std_error(&mut err) };
    err.error_exit = Some(fatal);
    err.emit_message = Some(quiet);
    err.output_message = Some(silent);
    cinfo.common.err = &mut err;
    let created = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `cinfo` is zeroed with its error manager set, as libjpeg requires.
        unsafe { jpeg::jpeg_create_decompress(&mut cinfo) }
    }));
    if let Err(payload) = created {
        return Err(fatal_error(payload));
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `cinfo` was created above; `bytes` and `progress` outlive it.
        unsafe { read(&mut cinfo, &mut progress, bytes, (width, height), limits) }
    }));
    // SAFETY: created above, destroyed once, whatever state decoding stopped in.
    unsafe { jpeg::jpeg_destroy_decompress(&mut cinfo) };
    match outcome {
        Ok(result) => result,
        Err(payload) => Err(fatal_error(payload)),
    }
}

/// libjpeg's message out of its unwind; any other panic goes on.
fn fatal_error(payload: Box<dyn std::any::Any + Send>) -> VisionError {
    match payload.downcast::<Fatal>() {
        Ok(fatal) => VisionError::Corrupt(fatal.0),
        Err(other) => resume_unwind(other),
    }
}

/// Header, checks, then every scanline into one buffer.
///
/// # Safety
/// `cinfo` is a created decompressor whose error manager unwinds on fatal errors;
/// `bytes` and `progress` outlive it.
unsafe fn read(
    cinfo: &mut jpeg::jpeg_decompress_struct,
    progress: &mut jpeg::jpeg_progress_mgr,
    bytes: &[u8],
    (width, height): (u32, u32),
    limits: DecodeLimits,
) -> Result<RgbImage, VisionError> {
    // SAFETY: as the function's contract says; every call follows libjpeg's sequence
    // (source, header, parameters, start, scanlines, finish).
    unsafe {
        jpeg::jpeg_mem_src(cinfo, bytes.as_ptr(), bytes.len() as c_ulong);
        cinfo.common.progress = progress;
        // libjpeg's own buffers (progressive coefficients) stay within the limit.
        (*cinfo.common.mem).max_memory_to_use =
            c_long::try_from(limits.max_alloc).unwrap_or(c_long::MAX);
        jpeg::jpeg_read_header(cinfo, 1);
        if (cinfo.image_width, cinfo.image_height) != (width, height) {
            return Err(VisionError::Corrupt(format!(
                "the JPEG header says {}x{}, its frame {width}x{height}",
                cinfo.image_width, cinfo.image_height
            )));
        }
        let cmyk = matches!(
            cinfo.jpeg_color_space,
            jpeg::J_COLOR_SPACE::JCS_CMYK | jpeg::J_COLOR_SPACE::JCS_YCCK
        );
        cinfo.out_color_space = if cmyk {
            jpeg::J_COLOR_SPACE::JCS_CMYK
        } else {
            jpeg::J_COLOR_SPACE::JCS_RGB
        };
        cinfo.dct_method = jpeg::J_DCT_METHOD::JDCT_ISLOW;
        cinfo.do_fancy_upsampling = 1;
        let channels = if cmyk { 4usize } else { 3 };
        let bytes_needed = u64::from(width) * u64::from(height) * channels as u64;
        if bytes_needed > limits.max_alloc {
            return Err(VisionError::TooMuchMemory(limits.max_alloc));
        }
        jpeg::jpeg_start_decompress(cinfo);
        if cinfo.output_components as usize != channels
            || (cinfo.output_width, cinfo.output_height) != (width, height)
        {
            return Err(VisionError::Corrupt(
                "the JPEG decoder gives another size or layout than its header".into(),
            ));
        }
        let row = width as usize * channels;
        let mut pixels = vec![0u8; bytes_needed as usize];
        while cinfo.output_scanline < cinfo.output_height {
            let at = cinfo.output_scanline as usize * row;
            let rows = [pixels[at..at + row].as_mut_ptr()];
            if jpeg::jpeg_read_scanlines(cinfo, rows.as_ptr() as *mut _, 1) == 0 {
                return Err(VisionError::Corrupt(
                    "the JPEG decoder stopped early".into(),
                ));
            }
        }
        jpeg::jpeg_finish_decompress(cinfo);
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
