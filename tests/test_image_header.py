"""The strict JPEG/PNG structure reader (segpost.io.image_header) and the batch decoder
(segpost.io.image_decoder): sizes read from headers, truncated and corrupt files refused, fuzzed
files either refused with ImageError or decodable at the size they declare; nvImageCodec's path
run with its CPU backends where nvImageCodec is installed."""
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segpost.io.image_decoder import Decoded, FrameDecoder
from segpost.io.image_header import ImageError, inspect

cv2 = pytest.importorskip("cv2", reason="OpenCV makes the test images: pip install 'segpost[test]' (.ci/run does)")


def picture(height=120, width=160, seed=0):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 255, (height, width, 3), np.uint8), (9, 9), 3)


ENCODINGS = {
    "jpeg": lambda image: cv2.imencode(".jpg", image)[1].tobytes(),
    "progressive jpeg": lambda image: cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes(),
    "jpeg with restarts": lambda image: cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_RST_INTERVAL, 2])[1].tobytes(),
    "grey jpeg": lambda image: cv2.imencode(".jpg", image[:, :, 0])[1].tobytes(),
    "png": lambda image: cv2.imencode(".png", image)[1].tobytes(),
    "16-bit png": lambda image: cv2.imencode(".png", image.astype(np.uint16) * 257)[1].tobytes(),
    "grey png": lambda image: cv2.imencode(".png", image[:, :, 0])[1].tobytes(),
    "rgba png": lambda image: cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_BGR2BGRA))[1].tobytes(),
}


@pytest.mark.parametrize("name", sorted(ENCODINGS))
def test_the_header_gives_the_size_and_truncation_is_refused(name):
    data = ENCODINGS[name](picture(37, 91))
    header = inspect(data)
    assert (header.kind, header.height, header.width) == ("png" if "png" in name else "jpeg", 37, 91)
    for cut in (len(data) - 1, len(data) - 2, len(data) // 2, 40, 9):
        with pytest.raises(ImageError, match="truncated|no IEND|no EOI|no scan|past the end"):
            inspect(data[:cut])


def png_of_size(width, height, idat=b""):
    """A PNG declaring width x height whose IDAT holds `idat` (as a decompression bomb would)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", idat or zlib.compress(b"\x00" * 4096)) + chunk(b"IEND", b""))


def test_declared_sizes_and_broken_fields():
    assert (inspect(png_of_size(30000, 30000)).height, inspect(png_of_size(30000, 30000)).width) == (30000, 30000)
    for data, message in ((png_of_size(0, 10), "declared size 0x10"),
                          (png_of_size(10, 2 ** 31), "declared size"),
                          (b"GIF89a" + b"\x00" * 20, "not a JPEG or PNG"),
                          (b"", "not a JPEG or PNG")):
        with pytest.raises(ImageError, match=message):
            inspect(data)
    good = png_of_size(10, 10)
    corrupt = bytearray(good)
    corrupt[20] ^= 1   # inside IHDR: its CRC no longer holds
    with pytest.raises(ImageError, match="fails its CRC"):
        inspect(bytes(corrupt))
    jpeg = bytearray(ENCODINGS["jpeg"](picture()))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 7] = b"\x00\x00"   # height 0 (left to a DNL marker): refused
    with pytest.raises(ImageError, match="zero height"):
        inspect(bytes(jpeg))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(ENCODINGS)), position=st.floats(0, 1), value=st.integers(0, 255),
       cut=st.one_of(st.none(), st.floats(0, 1)))
def test_fuzzed_files_are_refused_or_decode_at_their_declared_size(name, position, value, cut):
    data = bytearray(ENCODINGS[name](picture(48, 64)))
    data[int(position * (len(data) - 1))] = value
    if cut is not None:
        data = data[:int(cut * len(data))]
    try:
        header = inspect(bytes(data))
    except ImageError:
        return
    decoded = cv2.imdecode(np.frombuffer(bytes(data), np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if decoded is not None:   # a flipped pixel bit decodes; the size is always the declared one
        assert decoded.shape[:2] == (header.height, header.width)


def test_the_opencv_decoder_gives_what_opencv_gives_and_says_why_not():
    decoder = FrameDecoder("cpu", "cpu", threads=2)
    images = [picture(40, 60, seed) for seed in range(3)]
    items = [(ENCODINGS["jpeg"](images[0]), None), (ENCODINGS["png"](images[1]), None),
             (ENCODINGS["png"](images[2])[:-30], None)]
    items = [(data, inspect(data)) if i < 2 else (data, inspect(items[1][0])) for i, (data, _) in enumerate(items)]
    out = decoder.decode(items)
    assert isinstance(out[0], Decoded) and isinstance(out[1], Decoded) and isinstance(out[2], ImageError)
    np.testing.assert_array_equal(out[1].frame, images[1])
    np.testing.assert_array_equal(out[0].frame, cv2.imdecode(np.frombuffer(items[0][0], np.uint8), cv2.IMREAD_COLOR))
    assert decoder.choice == "cpu" and "OpenCV" in decoder.why
    with pytest.raises(ValueError, match="decode gpu needs a replica on a GPU|needs nvImageCodec"):
        FrameDecoder("gpu", "cpu")
    assert FrameDecoder("auto", "cpu").why == "decode auto chose cpu (OpenCV): the pipeline runs on the CPU"
    decoder.close()


def test_nvimgcodec_batches_equal_opencv_and_reuse_their_images():
    """nvImageCodec's batch path with its CPU backends (libjpeg-turbo): the GPU path differs only in
    its backends and in where the images live."""
    pytest.importorskip("nvidia.nvimgcodec", reason="nvImageCodec is not installed: pip install 'segpost[test]' "
                        "or 'segpost[serve-gpu]' (.ci/run does)")
    decoder = FrameDecoder("gpu", "cpu", threads=1, pool_size=8, nvimgcodec_on_cpu=True)
    images = [picture(48 + 8 * k, 64, k) for k in range(4)]
    jpegs = [ENCODINGS["jpeg"](image) for image in images]
    truncated_header = inspect(jpegs[0])
    items = [(data, inspect(data)) for data in jpegs] + [(ENCODINGS["png"](images[0]), inspect(ENCODINGS["png"](images[0])))]
    items.append((jpegs[0][:len(jpegs[0]) // 2], truncated_header))   # nvImageCodec refuses it; OpenCV tries
    out = decoder.decode(items)
    references = [cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) for data in jpegs]
    for k in range(4):
        assert out[k].image is not None      # decoded by nvImageCodec
        np.testing.assert_array_equal(np.asarray(out[k].frame), references[k])
    assert out[4].image is None               # the PNG went to OpenCV
    np.testing.assert_array_equal(out[4].frame, images[0])
    assert isinstance(out[5], (ImageError, Decoded))
    kept = [d.image for d in out[:4]]
    decoder.recycle(out)
    again = decoder.decode(items[:4])
    assert {id(d.image) for d in again} == {id(image) for image in kept}   # the same images, reused
    for k in range(4):
        np.testing.assert_array_equal(np.asarray(again[k].frame), references[k])
    decoder.close()
