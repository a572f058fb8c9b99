//! JPEG decoding: the Pillow-exact path (libjpeg-turbo, `vision::decode`) against the
//! image crate's decoder used before, on the same files in the same run; medians.
//!
//!     cargo bench --bench jpeg

use std::io::Cursor;
use std::time::Instant;

use hoiclip::vision::{DecodeLimits, decode};

/// A photo-like JPEG of `w x h` at quality 90, 4:2:0 (deterministic).
fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x * 255 / w) as u8,
            (y * 255 / h) as u8,
            (((x ^ y) & 0x3f) * 3 + x * y % 7) as u8,
        ])
    });
    let mut out = Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .expect("encode");
    out.into_inner()
}

fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    println!("size        bytes   libjpeg-turbo ms  image crate ms  ratio");
    for (w, h, runs) in [(640, 480, 50), (1280, 960, 30), (4000, 3000, 5)] {
        let bytes = jpeg(w, h);
        let ours = median_ms(runs, || {
            decode(&bytes, DecodeLimits::default()).expect("decode");
        });
        let before = median_ms(runs, || {
            let _ = image::load_from_memory(&bytes).expect("decode").to_rgb8();
        });
        println!(
            "{:<10} {:>7}  {ours:>16.2}  {before:>14.2}  {:>5.2}",
            format!("{w}x{h}"),
            bytes.len(),
            ours / before
        );
    }
}
