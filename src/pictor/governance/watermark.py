"""Invisible watermark: 48 bits that survive JPEG/WebP, resizing, cropping and brightness changes.

Pure numpy/scipy/Pillow, no learned weights; embed and detect take about 10 ms each (detect up to about
30 ms) for a 1024x1024 image on one CPU core.

API
---
`embed(image, payload, strength=DEFAULT_STRENGTH)`: RGB or RGBA in, same mode and size out (alpha untouched);
`payload` is a 48-bit unsigned int. `detect(image) -> Detection` (`detected`, `payload`, `confidence`, and
diagnostics: the tile `period` and `shift` found, the sync peak `sync_z`, the number of decode `attempts`,
the unchecked `decoded` bits).
`detected` is true only when a decoded payload passes its CRC. Pictor passes
`payload_for(artifact_id)`: the first 12 hex digits of the id's 24 (`img_` + 24 random hex digits), 48 bits;
`artifact_prefix(payload)` gives `img_` + those 12 digits back, for the verifier to look up (two artifacts
share a prefix with probability 2^-48 per pair).

Design
------
*Pattern.* One periodic tile added to luminance (the same value to R, G and B). The tile is defined by
Fourier coefficients on a 64x64 grid, in a ring of radius 4.5 to 16 cycles per tile (periods of 4 to 14
cells; 352 coefficients): each has unit amplitude and a key phase (from `KEY`); a quarter of them form a fixed
*sync* template, the others carry two code-bit chips each (real and imaginary part, +-1). On an image whose
short side is about 512*u px the tile is drawn at 64*u px by exact band-limited interpolation (an inverse FFT
at that size; u = 2 for 1024x1024, so periods of 8 to 28 px, which survive halving, JPEG and WebP),
repeated from the top-left corner over the image, and scaled to `strength` levels RMS. *Luminance headroom*:
a brightness x1.2 saturates every channel above about 212, and near white the mark loses its positive half,
so pixels brighter than 200 get a weaker mark (a quarter of it above 240) and the pattern is rescaled so that
its RMS stays `strength` (but at most 2.5x on the other pixels): on a white background the mark moves into
the objects. Default strength 2.35: PSNR about 40.6 dB (more on bright images).

*Payload.* 48 bits + CRC-24/OPENPGP of them (72 bits), XOR-scrambled with a key mask (so that a blank or
all-zero decode never checks), encoded by a K=9, rate-1/3 convolutional code (240 code bits, free distance
18; `pictor.governance.ecc`), spread over the 528 chips by a key permutation (2 or 3 chips per code bit, at
frequencies far apart).

*Detection.* (0) Luminance, reduced to about 512 px on the short side; local contrast normalised (a 5-px
high-pass divided by its 15-px local RMS, so that busy regions of a photo weigh less); Tukey window.
(1) Scale: one FFT; its power is divided by its 7x7-bin local mean (the mark's lattice peaks are one bin wide,
the host's spectrum is smooth), and a comb matched to the tile's coefficients, k/p for every trial period p
(log steps of 0.4% from 20 px to half the image), picks the periods whose lattice holds the most whitened
energy. The no-resize period is tried first, then the 4 best. (2) Fold: for a period (px, py) the image's
discrete-time Fourier transform is evaluated exactly at the tile frequencies (k/px, k/py) (two small matrix
products: no resampling); that is what folding every tile onto one would give, and a crop only changes the
phase. (3) Shift: the sync coefficients, cross-correlated with the template by a 128x128 inverse FFT, give
the tile origin to a fraction of a cell; scale steps of 0.2% around the period keep the highest sync peak.
(4) Decode, if the sync peak stands at least `MIN_SYNC_Z` deviations out: remove the origin's phase ramp,
weight the chips by 1 / local host power at their frequency, sum them per code bit, Viterbi, descramble,
check the CRC. `confidence` is the agreement of the received code bits with the decoded codeword, rescaled
so that 0 is chance and 1 all of them (reported when detected, else 0).

*False positives.* On an unmarked image the decoded 72-bit word is, for the check, a random word: its 24 CRC
bits match its 48 payload bits with probability 2^-24 = 6.0e-8. Detection decodes at most `MAX_ATTEMPTS` = 8
(period, shift) hypotheses per image (in fact at most 5: the no-resize period and 4 comb candidates), so the
chance that any checks is at most 8 * 2^-24 = 4.8e-7 <= 1e-6 (union bound, whatever the dependence between
attempts). The sync threshold only lowers it further.

*Geometry covered.* Crops of any position (the tile repeats; the comb needs a few periods, the no-resize
hypothesis none), uniform scaling from about 0.3x to 2x, and their combinations; not rotation, flips or
aspect-ratio changes beyond about 0.3%. Sizes: embedding needs 128x128 px at least; detection is reliable
unattacked from 256x256 (a busy photo that small can fail), and survives the attacks above from about 512 px.
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
import scipy.fft as sfft
from PIL import Image, ImageChops
from scipy import ndimage

from pictor.governance.ecc import ConvolutionalCode, bits_to_int, crc, int_to_bits

PAYLOAD_BITS = 48
CRC_BITS = 24
INFO_BITS = PAYLOAD_BITS + CRC_BITS
KEY = 0x5049_4354_4F52  # "PICTOR": seeds the phases, the chip permutation and the scrambling mask
DEFAULT_STRENGTH = 2.35  # RMS of the added luminance pattern, in 8-bit levels (PSNR about 40.6 dB)

GRID = 64  # the tile's Fourier grid (cells per period)
K_LO, K_HI = 4.5, 16.0  # radius of the frequency ring, in cycles per tile (periods of 4 to 14 cells)
SYNC_FRACTION = 0.25
SOFT_BINDING_ALG = "org.pictor.watermark.1"
MIN_SIDE = 2 * GRID  # smallest side that can carry the mark (detection is reliable from about 384 px)
BASE_SIDE = 512  # the tile is drawn at GRID * round(short side / BASE_SIDE) pixels
MAX_ATTEMPTS = 8  # decodes (CRC checks) per image at most: the false-positive bound below counts them
MIN_SYNC_Z = 5.0  # sync peak height (standard deviations of the 128x128 correlation map) needed to decode

DETECT_SIDE = 512  # detection works on luminance reduced to about this many px on the short side
MIN_PERIOD = 20.0  # shortest tile period searched, in those px (a 1024x1024 image halved: 64)
COMB_STEP = 0.004  # log-step of the period search (the +-1 bin tolerance covers it)
COMB_CANDIDATES = 4
REFINE_STEP = 0.002
LOCAL_WHITEN = 7
SPATIAL_NORM: tuple[int, int, float] | None = (5, 15, 16.0)  # high-pass box, energy box, floor (levels^2)
SYNC_MAP = 128

_CODE = ConvolutionalCode()
_ARTIFACT_ID = re.compile(r"img_([0-9a-f]{24})")


@dataclass
class Detection:
    """What `detect` found. Only `detected` (a CRC-checked decode) says that the image carries a mark."""

    detected: bool
    payload: int | None
    confidence: float  # 0 = chance agreement of the code bits with the decoded codeword, 1 = all agree
    period: tuple[float, float] | None = None  # the tile period found, (x, y) in image pixels (128 as embedded
    # on a 1024x1024 image: 64 after halving it)
    shift: tuple[float, float] | None = None  # (x, y) of a tile origin in image pixels, in [-period/2, period/2)
    sync_z: float = 0.0  # height of the sync peak, in standard deviations of the correlation map
    attempts: int = 0  # decodes tried (CRC checks), at most MAX_ATTEMPTS
    decoded: int | None = None  # the 48 bits decoded at the best attempt, checked or not: a diagnostic
    # (bit accuracy in the benchmark), never evidence of a mark

    @property
    def artifact_prefix(self) -> str | None:
        return None if self.payload is None else artifact_prefix(self.payload)


def payload_for(artifact_id: str) -> int:
    """The 48-bit payload for a Pictor artifact id ("img_" + 24 hex digits): its first 12 hex digits."""
    match = _ARTIFACT_ID.fullmatch(artifact_id)
    if not match:
        raise ValueError(f"not a Pictor artifact id: {artifact_id!r}")
    return int(match.group(1)[: PAYLOAD_BITS // 4], 16)


def artifact_prefix(payload: int) -> str:
    """The artifact id prefix a detected payload names: "img_" + 12 hex digits."""
    return f"img_{payload:0{PAYLOAD_BITS // 4}x}"


# ---------------------------------------------------------------------------------------------------------
# The key: coefficients, phases, amplitudes, chip assignment.


@dataclass(frozen=True)
class _Layout:
    kx: np.ndarray  # (C,) int, >= 1
    ky: np.ndarray  # (C,) int
    amplitude: np.ndarray  # (C,) float
    phase: np.ndarray  # (C,) complex, unit
    sync: np.ndarray  # (C,) bool
    payload_index: np.ndarray  # indices of payload coefficients, (P,)
    chip_bit: np.ndarray  # (2P,) code bit of each chip: chips [0:P] real parts, [P:2P] imaginary parts
    scramble: np.ndarray  # (INFO_BITS,) 0/1


@cache
def _layout() -> _Layout:
    rng = np.random.default_rng(KEY)
    kys, kxs = np.meshgrid(np.arange(-GRID // 2 + 1, GRID // 2), np.arange(1, GRID // 2), indexing="ij")
    radius = np.hypot(kxs, kys)
    keep = (radius >= K_LO) & (radius <= K_HI)
    kx, ky = kxs[keep], kys[keep]
    n = len(kx)
    amplitude = np.ones(n)
    phase = np.exp(2j * np.pi * rng.random(n))
    sync = np.zeros(n, dtype=bool)
    sync[rng.permutation(n)[: round(n * SYNC_FRACTION)]] = True
    payload_index = np.flatnonzero(~sync)
    n_code = _CODE.coded_length(INFO_BITS)
    n_chips = 2 * len(payload_index)
    chip_bit = rng.permutation(n_chips) % n_code
    scramble = rng.integers(0, 2, INFO_BITS).astype(np.uint8)
    return _Layout(kx, ky, amplitude, phase, sync, payload_index, chip_bit, scramble)


def _codeword(payload: int) -> np.ndarray:
    if not 0 <= payload < 1 << PAYLOAD_BITS:
        raise ValueError(f"payload must be a {PAYLOAD_BITS}-bit unsigned integer")
    info = (payload << CRC_BITS) | crc(payload, PAYLOAD_BITS)
    bits = int_to_bits(info, INFO_BITS) ^ _layout().scramble
    return _CODE.encode(bits)


def _coefficients(payload: int) -> np.ndarray:
    """Complex tile coefficients (C,) for a payload."""
    lay = _layout()
    chips = _codeword(payload)[lay.chip_bit].astype(np.float64) * 2 - 1
    p = len(lay.payload_index)
    values = lay.phase * lay.amplitude
    values = values.astype(np.complex128)
    values[lay.payload_index] *= (chips[:p] + 1j * chips[p:]) / math.sqrt(2)
    return values


@lru_cache(maxsize=16)
def _tile(payload: int, size: int) -> np.ndarray:
    """The tile at `size` px (a multiple of GRID), float32, RMS 1."""
    lay = _layout()
    spectrum = np.zeros((size, size // 2 + 1), dtype=np.complex128)
    spectrum[lay.ky % size, lay.kx] = _coefficients(payload)
    tile = sfft.irfft2(spectrum, s=(size, size))
    tile /= np.sqrt(np.mean(tile**2))
    return tile.astype(np.float32)


def tile_factor(width: int, height: int) -> int:
    """u: the tile is GRID * u px on an image of this size (2 for 1024x1024)."""
    return max(1, round(min(width, height) / BASE_SIDE))


# ---------------------------------------------------------------------------------------------------------
# Embedding


# Luminance headroom: above about 212 a brightness x1.2 saturates every channel, and near white the mark
# loses its positive half at once; so the mark is weaker on bright pixels (down to a quarter above 240) and
# the whole pattern is rescaled to keep its RMS (at most doubled where it is not weakened).
HEADROOM_KNEE, HEADROOM_FLOOR_AT, HEADROOM_FLOOR, MAX_GAIN = 200, 240, 0.25, 2.5


@cache
def _luma_weights() -> np.ndarray:
    levels = np.arange(256, dtype=np.float64)
    ramp = (levels - HEADROOM_KNEE) / (HEADROOM_FLOOR_AT - HEADROOM_KNEE)
    return 1.0 - (1.0 - HEADROOM_FLOOR) * np.clip(ramp, 0.0, 1.0)


def _gain_table(histogram: list[int], strength: float) -> np.ndarray:
    """Per luminance level, the pattern's multiplier: weights scaled so that the mean square is strength^2."""
    weights = _luma_weights()
    counts = np.asarray(histogram, dtype=np.float64)
    mean_square = float(counts @ weights**2) / max(counts.sum(), 1.0)
    scale = strength / math.sqrt(mean_square)
    return np.minimum(weights * scale, MAX_GAIN * strength).astype(np.float32)


def embed(image: Image.Image, payload: int, strength: float = DEFAULT_STRENGTH) -> Image.Image:
    """Add the watermark for `payload` (48-bit int) to an RGB or RGBA image; same mode and size, alpha kept."""
    if image.mode not in ("RGB", "RGBA"):
        raise ValueError(f"embed takes RGB or RGBA images, not {image.mode}")
    width, height = image.size
    if min(width, height) < MIN_SIDE:
        raise ValueError(f"image too small to watermark: at least {MIN_SIDE}x{MIN_SIDE} px")
    size = GRID * tile_factor(width, height)
    tile = _tile(payload, size)
    rgb = image.convert("RGB") if image.mode == "RGBA" else image
    luma = rgb.convert("L")
    gain = _gain_table(luma.histogram(), float(strength))
    # gain per pixel (np.take: a third of fancy indexing's time), times the tile repeated across a strip of
    # rows, strip by strip: no full-size copy of the repeated tile, and the same products.
    pattern = np.take(gain, np.asarray(luma))
    strip = np.tile(tile, (1, -(-width // size)))[:, :width]
    for top in range(0, height, size):
        band = pattern[top:top + size]
        band *= strip[:len(band)]
    pattern += 128.5  # rounds on the uint8 cast
    pattern = np.clip(pattern, 0, 255, out=pattern).astype(np.uint8)
    layer = Image.fromarray(pattern, "L")
    marked = ImageChops.add(rgb, Image.merge("RGB", (layer, layer, layer)), 1.0, -128)
    if image.mode == "RGBA":
        marked.putalpha(image.getchannel("A"))
    return marked


# ---------------------------------------------------------------------------------------------------------
# Detection


def _tukey(n: int, alpha: float = 0.25) -> np.ndarray:
    w = np.ones(n)
    edge = max(1, int(alpha * n / 2))
    ramp = 0.5 * (1 - np.cos(np.pi * (np.arange(edge) + 0.5) / edge))
    w[:edge], w[n - edge:] = ramp, ramp[::-1]
    return w


@cache
def _windows(ny: int, nx: int) -> tuple[np.ndarray, np.ndarray]:
    return _tukey(ny).astype(np.float32)[:, None], _tukey(nx).astype(np.float32)[None, :]


def _prepare(image: Image.Image) -> tuple[np.ndarray, float]:
    """Luminance at about DETECT_SIDE px on the short side (never enlarged), mean removed, Tukey-windowed.

    Returns the array and its scale relative to the input image (internal px per image px)."""
    gray = image.convert("L") if image.mode != "L" else image
    width, height = gray.size
    ratio = min(1.0, DETECT_SIDE / min(width, height))
    if ratio < 1.0:
        factor = 1.0 / ratio
        if abs(factor - round(factor)) < 1e-6:
            gray = gray.reduce(round(factor))
        else:
            gray = gray.resize((max(1, round(width * ratio)), max(1, round(height * ratio))), Image.BILINEAR)
        ratio = gray.size[0] / width
    x = np.asarray(gray, dtype=np.float32)
    if SPATIAL_NORM:
        # Down-weight busy regions: the host's own detail is the noise, and it is far from uniform.
        high = x - ndimage.uniform_filter(x, size=SPATIAL_NORM[0], mode="reflect")
        energy = ndimage.uniform_filter(high * high, size=SPATIAL_NORM[1], mode="reflect")
        x = high / np.sqrt(energy + SPATIAL_NORM[2])
    x = x - x.mean()
    wy, wx = _windows(*x.shape)
    return x * wy * wx, ratio


@cache
def _period_grid(short: int) -> np.ndarray:
    return np.exp(np.arange(math.log(MIN_PERIOD), math.log(short / 2), COMB_STEP))


@cache
def _comb_index(ny: int, nx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each trial period: the flat spectrum index of every layout coefficient and which are valid."""
    lay = _layout()
    periods = _period_grid(min(nx, ny))
    u = np.rint(lay.kx[None, :] * (nx / periods[:, None])).astype(np.int64)
    v = np.rint(lay.ky[None, :] * (ny / periods[:, None])).astype(np.int64)
    valid = (u <= nx // 2) & (np.abs(v) < ny // 2)
    flat = (v % ny) * (nx // 2 + 1) + np.minimum(u, nx // 2)
    count = valid.sum(axis=1)
    keep = count >= len(lay.kx) // 2  # enough coefficients below Nyquist
    return periods[keep], np.where(valid, flat, -1)[keep], count[keep]


def _comb_candidates(white: np.ndarray, nx: int, n: int) -> list[float]:
    """Periods (internal px) whose frequency lattice k/p, over the layout's coefficients, has the most
    whitened spectral energy: a matched filter for the tile's Fourier peaks. Best first."""
    periods, flat, count = _comb_index(white.shape[0], nx)
    if len(periods) < 3:
        return []
    values = np.append(white.ravel(), np.float32(0))  # index -1: invalid coefficients add nothing
    score = values[flat].sum(axis=1) / count
    centre = np.median(score)
    z = (score - centre) / (1.4826 * np.median(np.abs(score - centre)) + 1e-12)
    padded = np.concatenate([[-np.inf], z, [-np.inf]])
    peaks = np.flatnonzero((z >= padded[:-2]) & (z >= padded[2:]))
    peaks = peaks[np.argsort(-z[peaks])][:n]
    return [float(periods[i]) for i in peaks]


def _powers(n: int, period: float, kmax: int) -> np.ndarray:
    """exp(-2 pi i k t / period) for t < n (rows) and k = 1..kmax (columns), by repeated multiplication."""
    base = np.exp(-2j * np.pi * np.arange(n) / period)
    return np.cumprod(np.broadcast_to(base[:, None], (n, kmax)), axis=1)


def _dtft(x: np.ndarray, px: float, py: float) -> np.ndarray:
    """The image's DTFT at the layout's frequencies (kx/px, ky/py) cycles per pixel: (C,) complex.

    Equivalent to resampling the image so that one period is GRID pixels, folding all tiles onto one and
    taking the tile's FFT, without the interpolation: x @ exp(-i wx x) along rows, then along columns.
    """
    lay = _layout()
    kmax = int(math.ceil(K_HI))
    ny, nx = x.shape
    ex = _powers(nx, px, kmax)
    rows = x @ np.concatenate([ex.real, ex.imag], axis=1).astype(np.float32)  # (ny, 2 kmax)
    rows = rows[:, :kmax] + 1j * rows[:, kmax:]
    ey = _powers(ny, py, kmax).T  # (kmax, ny) for ky = 1..kmax; ky = -k is the conjugate
    full = np.concatenate([np.conj(ey[::-1]), np.ones((1, ny)), ey]) @ rows  # (2 kmax + 1, kmax)
    return full[lay.ky + kmax, lay.kx - 1]


def _noise(local: np.ndarray, nx: int, px: float, py: float) -> np.ndarray:
    """Host power near each coefficient's frequency: the local spectral average at the nearest bin."""
    lay = _layout()
    ny = local.shape[0]
    u = np.minimum(np.rint(lay.kx * (nx / px)).astype(np.int64), nx // 2)
    v = np.rint(lay.ky * (ny / py)).astype(np.int64) % ny
    return local[v, u].astype(np.float64)


def _sync(values: np.ndarray, weights: np.ndarray) -> tuple[float, float, float]:
    """Tile origin (sx, sy) in grid cells and the sync peak's z-score."""
    lay = _layout()
    ref = lay.phase * lay.amplitude
    g = np.zeros((SYNC_MAP, SYNC_MAP // 2 + 1), dtype=np.complex128)
    s = lay.sync
    g[lay.ky[s] % SYNC_MAP, lay.kx[s]] = values[s] * np.conj(ref[s]) * weights[s]
    corr = sfft.irfft2(g, s=(SYNC_MAP, SYNC_MAP))
    iy, ix = np.unravel_index(int(np.argmax(corr)), corr.shape)
    peak = corr[iy, ix]
    z = float((peak - corr.mean()) / (corr.std() + 1e-30))

    def sub(a: float, b: float, c: float) -> float:
        denom = a - 2 * b + c
        return float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5)) if denom < 0 else 0.0

    dy = sub(corr[(iy - 1) % SYNC_MAP, ix], peak, corr[(iy + 1) % SYNC_MAP, ix])
    dx = sub(corr[iy, (ix - 1) % SYNC_MAP], peak, corr[iy, (ix + 1) % SYNC_MAP])
    cell = GRID / SYNC_MAP
    return (ix + dx) * cell, (iy + dy) * cell, z


def _decode(values: np.ndarray, weights: np.ndarray, sx: float, sy: float) -> tuple[int | None, int | None, float]:
    """Payload (None unless the CRC checks), the decoded 48 bits however they check, and the code-bit
    agreement rescaled to [0, 1]."""
    lay = _layout()
    ramp = np.exp(2j * np.pi * (lay.kx * sx + lay.ky * sy) / GRID)
    # The square root of the whitening weights: in full, a coefficient whose host power a lossy copy removed along
    # with most of the mark (JPEG's quantised-away frequencies on a flat image) outweighed the rest, and the code
    # bits followed its noise (about 1 in 12 half-size JPEG-50 copies of flat model outputs failed their CRC).
    y = values * ramp * np.conj(lay.phase) * lay.amplitude * np.sqrt(weights)
    y = y[lay.payload_index]
    chips = np.concatenate([y.real, y.imag])
    soft = np.bincount(lay.chip_bit, weights=chips, minlength=_CODE.coded_length(INFO_BITS))
    if not np.any(soft):
        return None, None, 0.0
    bits = _CODE.decode(soft)
    codeword = _CODE.encode(bits).astype(np.float64) * 2 - 1
    agreement = float(np.mean(np.sign(soft) == codeword))
    info = bits_to_int(bits ^ lay.scramble)
    payload, check = info >> CRC_BITS, info & ((1 << CRC_BITS) - 1)
    confidence = max(0.0, 2 * agreement - 1)
    return (payload if crc(payload, PAYLOAD_BITS) == check else None), payload, confidence


def _max3(a: np.ndarray) -> np.ndarray:
    """3x3 maximum filter (edges replicated)."""
    m = a.copy()
    np.maximum(m[1:], a[:-1], out=m[1:])
    np.maximum(m[:-1], a[1:], out=m[:-1])
    out = m.copy()
    np.maximum(out[:, 1:], m[:, :-1], out=out[:, 1:])
    np.maximum(out[:, :-1], m[:, 1:], out=out[:, :-1])
    return out


def _wrap(cells: float) -> float:
    """A tile origin in grid cells -> a fraction of the period in [-1/2, 1/2)."""
    return float(((cells + GRID / 2) % GRID - GRID / 2) / GRID)


def _try_period(x: np.ndarray, local: np.ndarray, px: float, py: float):
    values = _dtft(x, px, py)
    weights = 1.0 / _noise(local, x.shape[1], px, py)
    sx, sy, z = _sync(values, weights)
    return z, px, py, values, weights, sx, sy


def detect(image: Image.Image) -> Detection:
    """Look for a watermark; `detected` only when a decoded payload passes its CRC."""
    width, height = image.size
    if min(width, height) < GRID:
        return Detection(False, None, 0.0)
    x, ratio = _prepare(image)
    ny, nx = x.shape
    spectrum = sfft.rfft2(x, workers=1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    # Local spectral level (7x7 bins): the host's, since the mark's lattice peaks are a bin or two wide.
    local = ndimage.uniform_filter(power, size=LOCAL_WHITEN, mode="wrap")
    local += 1e-6 * float(local.mean()) + 1e-12
    white = _max3(power / local)  # +-1 bin: the comb's step tolerance
    nominal = GRID * tile_factor(width, height) * ratio
    candidates = [nominal] + [p for p in _comb_candidates(white, nx, COMB_CANDIDATES)
                              if abs(p / nominal - 1) > 2 * COMB_STEP]

    best = Detection(False, None, 0.0)
    attempts = 0
    for period in candidates:
        if attempts >= MAX_ATTEMPTS:
            break
        # The sync peak at the candidate; if it is there, small scale steps around it keep the best peak.
        # (No CRC check here, so these cost nothing in false positives.)
        top = _try_period(x, local, period, period)
        if top[0] < MIN_SYNC_Z - 1.0:
            continue
        for step in (-REFINE_STEP, REFINE_STEP):
            trial = _try_period(x, local, period * (1 + step), period * (1 + step))
            if trial[0] > top[0]:
                top = trial
                further = _try_period(x, local, period * (1 + 2 * step), period * (1 + 2 * step))
                if further[0] > top[0]:
                    top = further
                break
        z, px, py, values, weights, sx, sy = top
        if z < MIN_SYNC_Z:
            continue
        attempts += 1
        payload, decoded, confidence = _decode(values, weights, sx, sy)
        period_px = (px / ratio, py / ratio)
        found = Detection(
            detected=payload is not None,
            payload=payload,
            confidence=round(confidence, 4) if payload is not None else 0.0,
            period=(round(float(period_px[0]), 3), round(float(period_px[1]), 3)),
            shift=(_wrap(sx) * period_px[0], _wrap(sy) * period_px[1]),
            sync_z=round(z, 2),
            attempts=attempts,
            decoded=decoded,
        )
        if found.detected:
            return found
        if z > best.sync_z:
            best = found
    best.attempts = attempts
    return best


def soft_binding(payload: int) -> dict:
    """The C2PA `c2pa.soft-binding` assertion naming this mark, so a manifest can say `c2pa.watermarked`."""
    value = base64.b64encode(payload.to_bytes(PAYLOAD_BITS // 8, "big")).decode()
    return {"label": "c2pa.soft-binding", "data": {"alg": SOFT_BINDING_ALG, "blocks": [{"scope": {}, "value": value}]}}
