//! Thumbnails per second of the worker's render function (decode + 3 sizes
//! x JPEG q85 + lossless WebP), on deterministic generated photos.
//! Run through crates/refapp/scripts/bench-thumbnails, which then runs the
//! same work with Python Pillow on the same files.
//!
//!   cargo bench -p refapp --bench thumbnails -- [--out DIR] [--iters N]

use std::io::Cursor;
use std::path::PathBuf;
use std::time::Instant;

use image::{DynamicImage, ImageFormat, RgbImage};
use refapp::imaging::{self, OutFormat};

/// Photo-like content: smooth gradients, some structure and sensor-ish
/// noise from a fixed xorshift seed (so the JPEGs compress like photos).
fn photo(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut s = seed | 1;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % 17) as i32 - 8
    };
    RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let wave = ((fx * 23.0 + seed as f32).sin() * (fy * 17.0).cos() * 40.0) as i32;
        let r = (fx * 180.0) as i32 + wave + rnd();
        let g = (fy * 160.0 + 40.0) as i32 - wave / 2 + rnd();
        let b = ((1.0 - fx) * fy * 200.0 + 30.0) as i32 + rnd();
        image::Rgb([r.clamp(0, 255) as u8, g.clamp(0, 255) as u8, b.clamp(0, 255) as u8])
    })
}

fn encode(img: RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut buf = Cursor::new(Vec::new());
    match format {
        ImageFormat::Jpeg => image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 92)
            .encode_image(&img)
            .unwrap(),
        f => DynamicImage::ImageRgb8(img).write_to(&mut buf, f).unwrap(),
    }
    buf.into_inner()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let out = arg("--out")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("refapp-bench-images"));
    let iters: u32 = arg("--iters").map(|s| s.parse().unwrap()).unwrap_or(5);
    std::fs::create_dir_all(&out).unwrap();

    let images = [
        ("photo-4000x3000.jpg", photo(4000, 3000, 1), ImageFormat::Jpeg),
        ("photo-2048x1536.jpg", photo(2048, 1536, 2), ImageFormat::Jpeg),
        ("photo-1600x1200.png", photo(1600, 1200, 3), ImageFormat::Png),
    ];
    println!(
        "refapp render bench: {} sizes {:?}, JPEG q{} + lossless WebP, {iters} iterations per image",
        imaging::SIZES.len(),
        imaging::SIZES,
        imaging::JPEG_QUALITY
    );
    println!("images in {}", out.display());
    let (mut total_thumbs, mut total_secs) = (0usize, 0f64);
    let (mut jpeg_thumbs, mut jpeg_secs) = (0usize, 0f64);
    for (name, img, format) in images {
        let bytes = encode(img, format);
        std::fs::write(out.join(name), &bytes).unwrap();
        for (formats, label) in [
            (&OutFormat::ALL[..], "jpeg+webp"),
            (&[OutFormat::Jpeg][..], "jpeg only"),
        ] {
            imaging::render_formats(&bytes, formats).unwrap(); // warm-up
            let start = Instant::now();
            let mut n = 0;
            for _ in 0..iters {
                n += imaging::render_formats(&bytes, formats).unwrap().len();
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "  {name:<22} {label:<9} {:>7.1} thumbnails/s  ({:.1} ms per source image)",
                n as f64 / secs,
                secs * 1000.0 / iters as f64
            );
            if formats.len() == 2 {
                total_thumbs += n;
                total_secs += secs;
            } else {
                jpeg_thumbs += n;
                jpeg_secs += secs;
            }
        }
    }
    println!(
        "RUST total jpeg+webp: {:.1} thumbnails/s",
        total_thumbs as f64 / total_secs
    );
    println!(
        "RUST total jpeg only: {:.1} thumbnails/s",
        jpeg_thumbs as f64 / jpeg_secs
    );
}
