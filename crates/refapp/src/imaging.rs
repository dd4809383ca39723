//! Upload validation (header decode) and thumbnail rendering.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::webp::WebPEncoder;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

/// Bounding boxes of the renditions, largest first (each is rendered from
/// the previous one: cheaper than from the original every time).
pub const SIZES: [u32; 3] = [1024, 320, 64];
pub const JPEG_QUALITY: u8 = 85;
/// Refuse images whose decoded size would be absurd (decompression bombs).
pub const MAX_DIMENSION: u32 = 12_000;
pub const MAX_ALLOC: u64 = 600 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    WebP,
}

impl Format {
    pub fn ext(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::WebP => "webp",
        }
    }
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::WebP => "image/webp",
        }
    }
    fn image_format(self) -> ImageFormat {
        match self {
            Format::Jpeg => ImageFormat::Jpeg,
            Format::Png => ImageFormat::Png,
            Format::WebP => ImageFormat::WebP,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub format: Format,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProbeError {
    #[error("not a JPEG, PNG or WebP image")]
    Unsupported,
    #[error("image header could not be decoded: {0}")]
    Corrupt(String),
    #[error("image dimensions {0}x{1} are out of range (max {MAX_DIMENSION} per side)")]
    Dimensions(u32, u32),
}

fn limits() -> Limits {
    let mut l = Limits::default();
    l.max_image_width = Some(MAX_DIMENSION);
    l.max_image_height = Some(MAX_DIMENSION);
    l.max_alloc = Some(MAX_ALLOC);
    l
}

/// Identify the format from the magic bytes and decode the header (not the
/// pixels): cheap enough for the web process.
pub fn probe(bytes: &[u8]) -> Result<Probe, ProbeError> {
    let format = match image::guess_format(bytes) {
        Ok(ImageFormat::Jpeg) => Format::Jpeg,
        Ok(ImageFormat::Png) => Format::Png,
        Ok(ImageFormat::WebP) => Format::WebP,
        _ => return Err(ProbeError::Unsupported),
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.image_format());
    reader.no_limits();
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| ProbeError::Corrupt(e.to_string()))?;
    if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(ProbeError::Dimensions(width, height));
    }
    Ok(Probe { format, width, height })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFormat {
    Jpeg,
    WebP,
}

impl OutFormat {
    pub const ALL: [OutFormat; 2] = [OutFormat::Jpeg, OutFormat::WebP];
    pub fn ext(self) -> &'static str {
        match self {
            OutFormat::Jpeg => "jpg",
            OutFormat::WebP => "webp",
        }
    }
    pub fn content_type(self) -> &'static str {
        match self {
            OutFormat::Jpeg => "image/jpeg",
            OutFormat::WebP => "image/webp",
        }
    }
}

pub struct RenderedImage {
    pub size: u32,
    pub format: OutFormat,
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The input can never be rendered (poison message).
    #[error("cannot decode image: {0}")]
    Decode(String),
    #[error("cannot encode rendition: {0}")]
    Encode(String),
}

/// Decode the whole image (honouring the EXIF orientation), flatten alpha
/// onto white.
pub fn decode(bytes: &[u8]) -> Result<RgbImage, RenderError> {
    let probe = probe(bytes).map_err(|e| RenderError::Decode(e.to_string()))?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), probe.format.image_format());
    reader.limits(limits());
    let mut decoder = reader.into_decoder().map_err(|e| RenderError::Decode(e.to_string()))?;
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| RenderError::Decode(e.to_string()))?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(flatten(img))
}

fn flatten(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let a = src[3] as u32;
        for c in 0..3 {
            dst[c] = ((src[c] as u32 * a + 255 * (255 - a) + 127) / 255) as u8;
        }
    }
    out
}

/// The dimensions of `(w, h)` fitted into a `size` x `size` box, never
/// upscaled, at least 1 px.
pub fn fit(w: u32, h: u32, size: u32) -> (u32, u32) {
    if w <= size && h <= size {
        return (w, h);
    }
    if w >= h {
        (size, ((h as u64 * size as u64 + w as u64 / 2) / w as u64).max(1) as u32)
    } else {
        (((w as u64 * size as u64 + h as u64 / 2) / h as u64).max(1) as u32, size)
    }
}

pub fn encode(img: &RgbImage, format: OutFormat) -> Result<Vec<u8>, RenderError> {
    let mut buf = Vec::new();
    match format {
        OutFormat::Jpeg => JpegEncoder::new_with_quality(&mut buf, JPEG_QUALITY)
            .encode_image(img)
            .map_err(|e| RenderError::Encode(e.to_string()))?,
        // The image crate's WebP encoder is lossless only.
        OutFormat::WebP => WebPEncoder::new_lossless(&mut buf)
            .encode(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)
            .map_err(|e| RenderError::Encode(e.to_string()))?,
    }
    Ok(buf)
}

/// Render every size in every output format. Pure and deterministic: the
/// same input gives the same bytes, so a redelivered job overwrites the
/// same S3 objects with the same content.
pub fn render(bytes: &[u8]) -> Result<Vec<RenderedImage>, RenderError> {
    render_formats(bytes, &OutFormat::ALL)
}

/// `render` restricted to some output formats (benchmarks).
pub fn render_formats(bytes: &[u8], formats: &[OutFormat]) -> Result<Vec<RenderedImage>, RenderError> {
    let original = decode(bytes)?;
    let mut out = Vec::with_capacity(SIZES.len() * formats.len());
    let mut current = original;
    for size in SIZES {
        let (w, h) = fit(current.width(), current.height(), size);
        if (w, h) != current.dimensions() {
            current = image::imageops::thumbnail(&current, w, h);
        }
        for &format in formats {
            out.push(RenderedImage {
                size,
                format,
                width: w,
                height: h,
                bytes: encode(&current, format)?,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample(w: u32, h: u32, format: ImageFormat) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
        });
        let mut buf = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(img).write_to(&mut buf, format).unwrap();
        buf.into_inner()
    }

    #[test]
    fn probe_accepts_the_three_formats() {
        for (f, want) in [
            (ImageFormat::Jpeg, Format::Jpeg),
            (ImageFormat::Png, Format::Png),
            (ImageFormat::WebP, Format::WebP),
        ] {
            let p = probe(&sample(40, 30, f)).unwrap();
            assert_eq!(
                p,
                Probe {
                    format: want,
                    width: 40,
                    height: 30
                }
            );
        }
    }

    #[test]
    fn probe_rejects_non_images_and_truncated_headers() {
        assert_eq!(probe(b"GIF89a.........."), Err(ProbeError::Unsupported));
        assert_eq!(probe(b"hello world, not an image"), Err(ProbeError::Unsupported));
        let png = sample(40, 30, ImageFormat::Png);
        assert!(matches!(probe(&png[..12]), Err(ProbeError::Corrupt(_))));
    }

    #[test]
    fn fit_keeps_aspect_and_never_upscales() {
        assert_eq!(fit(4000, 3000, 1024), (1024, 768));
        assert_eq!(fit(3000, 4000, 320), (240, 320));
        assert_eq!(fit(100, 50, 320), (100, 50));
        assert_eq!(fit(10000, 1, 64), (64, 1));
    }

    #[test]
    fn render_produces_all_sizes_and_formats_deterministically() {
        let src = sample(1500, 1000, ImageFormat::Png);
        let a = render(&src).unwrap();
        assert_eq!(a.len(), 6);
        let dims: Vec<(u32, u32, u32)> = a.iter().map(|r| (r.size, r.width, r.height)).collect();
        assert_eq!(
            dims,
            vec![
                (1024, 1024, 683),
                (1024, 1024, 683),
                (320, 320, 213),
                (320, 320, 213),
                (64, 64, 43),
                (64, 64, 43)
            ]
        );
        for r in &a {
            let back = image::load_from_memory(&r.bytes).unwrap();
            assert_eq!((back.width(), back.height()), (r.width, r.height));
        }
        let b = render(&src).unwrap();
        assert!(a.iter().zip(&b).all(|(x, y)| x.bytes == y.bytes));
    }

    #[test]
    fn corrupt_pixel_data_is_a_decode_error_but_passes_probe() {
        let mut png = sample(64, 64, ImageFormat::Png);
        let idat = png.windows(4).position(|w| w == b"IDAT").unwrap();
        for b in &mut png[idat + 8..idat + 40] {
            *b ^= 0x5a;
        }
        assert!(probe(&png).is_ok());
        assert!(matches!(render(&png), Err(RenderError::Decode(_))));
    }

    #[test]
    fn alpha_is_flattened_on_white() {
        let img = image::RgbaImage::from_pixel(4, 4, image::Rgba([0, 0, 0, 0]));
        let rgb = flatten(DynamicImage::ImageRgba8(img));
        assert!(rgb.pixels().all(|p| p.0 == [255, 255, 255]));
    }
}
