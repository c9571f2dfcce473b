"""Mutated image bytes never raise anything but ImageError, and predict never crashes on them."""

import io
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from melanoma.imaging import ImageError, open_rgb

from conftest import textured_lesion

_img = textured_lesion(np.random.default_rng(0), size=64)
SEEDS = {}
for fmt in ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF"):
    buf = io.BytesIO()
    _img.save(buf, fmt)
    SEEDS[fmt] = buf.getvalue()


@st.composite
def mutated(draw):
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "zero"]))
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[i:i + draw(st.integers(1, 200))]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[i:i + 32] = bytes(len(data[i:i + 32]))
        if not data:
            break
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=mutated())
def test_mutated_images_open_or_fail_cleanly(tmp_path: Path, blob: bytes):
    p = tmp_path / "fuzz.img"
    p.write_bytes(blob)
    try:
        im = open_rgb(p)
    except ImageError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert im.mode == "RGB" and min(im.size) >= 32


def test_predict_survives_a_batch_of_mutants(tmp_path: Path, tiny_model_dir: Path):
    import random

    from melanoma.nn.torch_engine import TorchPredictor

    rng = random.Random(0)
    paths = []
    for k in range(40):
        data = bytearray(SEEDS[rng.choice(sorted(SEEDS))])
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if k % 5 == 0:
            data = data[: rng.randrange(len(data))]
        paths.append(tmp_path / f"m{k}.bin")
        paths[-1].write_bytes(bytes(data))
    rows = TorchPredictor(tiny_model_dir).predict_paths(paths)
    assert len(rows) == 40
    assert all(r["status"] in ("ok", "error", "out_of_distribution") for r in rows)
    assert all(r["error"] for r in rows if r["status"] == "error")
