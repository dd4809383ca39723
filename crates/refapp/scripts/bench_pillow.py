"""Pillow baseline for refapp's thumbnail benchmark (same images, sizes and
quality as benches/thumbnails.rs).

  cascade:   decode fully, then thumbnail 1024 -> 320 -> 64 (each from the
             previous one, like refapp), save JPEG q85 + lossless WebP.
             The same work as refapp's render function.
  idiomatic: per size, Image.open + thumbnail() straight from the file, which
             lets Pillow use JPEG draft mode (DCT scaling while decoding) --
             what a typical Pillow app gets for free.

usage: python bench_pillow.py IMAGE_DIR [ITERS]
"""
import io
import os
import sys
import time

from PIL import Image, ImageOps

SIZES = (1024, 320, 64)
JPEG_QUALITY = 85


def save_all(im, formats):
    n = 0
    for fmt in formats:
        buf = io.BytesIO()
        if fmt == "jpeg":
            im.save(buf, "JPEG", quality=JPEG_QUALITY)
        else:
            im.save(buf, "WEBP", lossless=True)
        n += 1
    return n


def cascade(path, formats):
    im = Image.open(path)
    im = ImageOps.exif_transpose(im).convert("RGB")
    n = 0
    for size in SIZES:
        im = im.copy()
        im.thumbnail((size, size))
        n += save_all(im, formats)
    return n


def idiomatic(path, formats):
    n = 0
    for size in SIZES:
        im = Image.open(path)
        im.thumbnail((size, size))
        im = im.convert("RGB")
        n += save_all(im, formats)
    return n


def main():
    d = sys.argv[1]
    iters = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    import PIL

    print(f"Pillow {PIL.__version__} bench: sizes {SIZES}, JPEG q{JPEG_QUALITY} + lossless WebP, {iters} iterations per image")
    names = sorted(f for f in os.listdir(d) if f.startswith("photo-"))
    for variant, fn in (("cascade", cascade), ("idiomatic", idiomatic)):
        for formats, label in ((("jpeg", "webp"), "jpeg+webp"), (("jpeg",), "jpeg only")):
            total_n, total_s = 0, 0.0
            for name in names:
                path = os.path.join(d, name)
                fn(path, formats)  # warm-up
                t = time.perf_counter()
                n = sum(fn(path, formats) for _ in range(iters))
                s = time.perf_counter() - t
                total_n += n
                total_s += s
                print(f"  {variant:<9} {name:<22} {label:<9} {n / s:7.1f} thumbnails/s  ({s * 1000 / iters:.1f} ms per source image)")
            print(f"PILLOW {variant} total {label}: {total_n / total_s:.1f} thumbnails/s")


if __name__ == "__main__":
    main()
