"""Decode any audio a user has into mono float32 at 16 kHz, and the crop policies of the models.

``load_audio`` reads WAV, FLAC, OGG/Vorbis, OGG/Opus and MP3 with libsndfile (soundfile) and
anything else FFmpeg knows (M4A/AAC, WebM, Opus, ...) with PyAV. Channels are averaged, the rate
is converted with soxr's band-limited resampler, and every failure is one :class:`AudioError`
that names the file and the reason.
"""

from __future__ import annotations

import io
import logging
import os
import struct
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np

from .errors import SpoofscopeError

log = logging.getLogger(__name__)

#: Samples the official AASIST/RawNet2 evaluation feeds the model (about 4 s at 16 kHz).
OFFICIAL_NUM_SAMPLES = 64600
DEFAULT_SAMPLE_RATE = 16000
#: Default upper bound on decoded duration, in seconds (one hour).
DEFAULT_MAX_DURATION_S = 3600.0

Source = str | os.PathLike | bytes | bytearray | memoryview


class AudioError(SpoofscopeError, ValueError):
    """An audio input that cannot be used; the message names the input and the reason.

    ``kind`` classifies it: ``missing``, ``empty`` (no bytes or no samples), ``too_long``,
    ``invalid`` (not audio, corrupt, truncated, an absurd header), ``invalid_samples`` (NaN or
    infinite samples).
    """

    def __init__(self, source: str, reason: str, kind: str = "invalid"):
        self.source = source
        self.reason = reason
        self.kind = kind
        super().__init__(f"{source}: {reason}")


def _describe(source: Source, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, bytes | bytearray | memoryview):
        return f"<{len(source)} bytes in memory>"
    return str(source)


def _wav_truncation(head: bytes, total: int) -> str | None:
    """Compare the WAV data chunk size that a RIFF header declares with the bytes present."""
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        return None
    endian = "<" if head[:4] == b"RIFF" else ">"
    pos = 12
    while pos + 8 <= len(head):
        cid = head[pos : pos + 4]
        (size,) = struct.unpack(endian + "I", head[pos + 4 : pos + 8])
        if cid == b"data":
            # 0 and 0xFFFFFFFF mark streams written without a final size: nothing to check
            if size in (0, 0xFFFFFFFF):
                return None
            have = total - (pos + 8)
            if have < size:
                return (
                    f"truncated WAV: the header declares {size} bytes of audio "
                    f"but the file holds {have}"
                )
            return None
        pos += 8 + size + (size & 1)
    return None


_BLOCK_FRAMES = 1 << 18  # about 16 s at 16 kHz per decoded block


#: below this a "speech" file is a corrupt or hostile header (a 1 Hz WAV of 590 samples claims
#: 590 s): refused before decoding
MIN_SAMPLE_RATE = 8000
#: above this a sample rate is a corrupt header, not a recording
MAX_SAMPLE_RATE = 768000


def _check_rate(desc: str, sr) -> None:
    if not sr or sr <= 0:
        raise AudioError(desc, f"invalid sample rate {sr} in the header")
    if sr > MAX_SAMPLE_RATE:
        raise AudioError(
            desc, f"sample rate {sr} Hz is above {MAX_SAMPLE_RATE} Hz: a corrupt header"
        )
    if sr < MIN_SAMPLE_RATE:
        raise AudioError(
            desc,
            f"sample rate {sr} Hz is below {MIN_SAMPLE_RATE} Hz: not speech audio, or a corrupt "
            "header; resample the recording to 16 kHz",
        )


def _ffmpeg_reason(e: Exception) -> str:
    """FFmpeg's message without its internals (errno numbers, '<none>' file names)."""
    import re

    msg = getattr(e, "strerror", None) or str(e)
    msg = re.sub(r"\[Errno -?\d+\]\s*", "", str(msg))
    msg = re.sub(r":\s*'<none>'", "", msg).strip().rstrip(".")
    return msg[:1].lower() + msg[1:] if msg else type(e).__name__


def _too_long(desc: str, seconds: float | None, max_s: float) -> AudioError:
    what = f"audio is {seconds:.1f} s long" if seconds is not None else "audio is longer"
    # the caller knows which setting sets the limit (max_duration_s, serve --max-duration)
    return AudioError(desc, f"{what}, over the limit of {max_s:g} s", kind="too_long")


#: Lossy formats whose header length may exceed what the decoder returns by a few samples
#: (Vorbis and MP3 trim the encoder's padding at the end): a shortfall up to this many frames
#: (one Vorbis long block; 0.09 s at 44.1 kHz) is normal, more is a truncated file.
COMPRESSED_TOLERANCE_FRAMES = 4096
_EXACT_FORMATS = ("WAV", "WAVEX", "RF64", "W64", "FLAC", "AIFF", "CAF", "AU")


def _ogg_unfinished(head_tail: bytes) -> str | None:
    """An Ogg file cut short: its last page lacks the end-of-stream flag, or ends mid-page."""
    pos = head_tail.rfind(b"OggS")
    if pos < 0 or len(head_tail) < pos + 27:
        return None
    nseg = head_tail[pos + 26]
    if len(head_tail) < pos + 27 + nseg:
        return "the file ends inside an Ogg page"
    size = 27 + nseg + sum(head_tail[pos + 27 : pos + 27 + nseg])
    if len(head_tail) - pos < size:
        return "the file ends inside an Ogg page"
    if not head_tail[pos + 5] & 0x04:
        return "the stream ends without its end-of-stream page"
    return None


def _blocks_soundfile(f, desc: str, max_s: float) -> Iterator[np.ndarray]:
    """Blocks (n, channels) float32 from an open soundfile.SoundFile."""
    import soundfile as sf

    sr, frames = f.samplerate, f.frames
    _check_rate(desc, sr)
    if frames > 0 and frames / sr > max_s:
        raise _too_long(desc, frames / sr, max_s)
    got = 0
    try:
        while True:
            block = f.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
            if block.shape[0] == 0:
                break
            got += block.shape[0]
            if got / sr > max_s:
                raise _too_long(desc, None, max_s)
            yield block
    except sf.LibsndfileError as e:
        raise AudioError(desc, f"corrupt or truncated {f.format} file ({str(e).strip()})") from None
    short = frames - got
    tolerance = 0 if f.format in _EXACT_FORMATS else COMPRESSED_TOLERANCE_FRAMES
    if frames > 0 and short > tolerance:
        raise AudioError(
            desc,
            f"truncated or corrupt {f.format} file: the header promises {frames} samples "
            f"but only {got} could be decoded"
            + (f" (up to {tolerance} fewer is normal for {f.format})" if tolerance else ""),
        )


def _blocks_pyav(container, desc: str, max_s: float) -> Iterator[np.ndarray]:
    """Blocks (n, channels) float32 decoded by FFmpeg through PyAV."""
    import av

    streams = container.streams.audio
    if not streams:
        raise AudioError(desc, "the file holds no audio stream")
    stream = streams[0]
    sr = stream.codec_context.sample_rate or stream.rate
    _check_rate(desc, sr)
    got = 0
    try:
        for frame in container.decode(stream):
            a = frame.to_ndarray()
            ch = len(frame.layout.channels)
            a = a.reshape(ch, -1).T if frame.format.is_planar else a.reshape(-1, ch)
            if a.dtype.kind in "iu":
                a = a.astype(np.float32) / float(np.iinfo(a.dtype).max + 1)
            got += a.shape[0]
            if got / sr > max_s:
                raise _too_long(desc, None, max_s)
            yield a.astype(np.float32, copy=False)
    except av.error.FFmpegError as e:
        raise AudioError(
            desc, f"corrupt or truncated audio stream ({_ffmpeg_reason(e)}); re-encode it"
        ) from None
    declared = float(stream.duration * stream.time_base) if stream.duration else None
    if declared and declared > 1.0 and got / sr < 0.9 * declared:
        raise AudioError(
            desc,
            f"truncated or corrupt file: the stream declares {declared:.2f} s "
            f"but only {got / sr:.2f} s could be decoded",
        )


@contextmanager
def _open_decoder(source: Source, desc: str, max_s: float):
    """Open ``source`` and give ``(sample_rate, iterator of (n, channels) float32 blocks)``."""
    import soundfile as sf

    if isinstance(source, bytes | bytearray | memoryview):
        raw = bytes(source)
        if not raw:
            raise AudioError(desc, "empty input (0 bytes)", kind="empty")
        head, total = raw[:65536], len(raw)

        def opener():
            return io.BytesIO(raw)

        def tail():
            return raw[-65536:]
    else:
        path = Path(source)
        if not path.exists():
            raise AudioError(desc, "no such file", kind="missing")
        if path.is_dir():
            raise AudioError(desc, "is a folder, not an audio file")
        total = path.stat().st_size
        if total == 0:
            raise AudioError(desc, "empty file (0 bytes)", kind="empty")
        try:
            with open(path, "rb") as fh:
                head = fh.read(65536)
        except OSError as e:
            raise AudioError(desc, f"cannot be read ({e.strerror})") from None

        def opener():
            return open(path, "rb")

        def tail():  # read only for an Ogg file, whose last page tells whether it is whole
            with open(path, "rb") as fh:
                fh.seek(max(total - 65536, 0))
                return fh.read()

    trunc = _wav_truncation(head, total)
    if trunc:
        raise AudioError(desc, trunc)
    if head[:4] == b"OggS":
        cut = _ogg_unfinished(tail())
        if cut:
            raise AudioError(desc, f"truncated OGG file: {cut}; re-encode or re-download it")
    with ExitStack() as stack:
        fobj = stack.enter_context(opener())
        try:
            f = stack.enter_context(sf.SoundFile(fobj))
        except sf.LibsndfileError as e:
            msg = str(e)
            if not (
                "Format not recognised" in msg
                or "System error" in msg
                or "unknown format" in msg.lower()
            ):
                raise AudioError(
                    desc, f"cannot be decoded ({msg.split(':')[-1].strip()})"
                ) from None
            f = None
        if f is not None:
            yield f.samplerate, _blocks_soundfile(f, desc, max_s)
            return
        import av

        fobj.seek(0)
        try:
            container = stack.enter_context(av.open(fobj, mode="r"))
        except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
            raise AudioError(
                desc,
                f"not a recognised audio file ({_ffmpeg_reason(e)}); supported: WAV, FLAC, "
                "OGG/Opus, MP3, M4A/AAC, WebM",
            ) from None
        if not container.streams.audio:
            raise AudioError(desc, "the file holds no audio stream")
        st = container.streams.audio[0]
        sr = st.codec_context.sample_rate or st.rate
        if not sr:
            raise AudioError(desc, "the audio stream has no sample rate")
        _check_rate(desc, sr)
        yield sr, _blocks_pyav(container, desc, max_s)


_clipping_reported = False


def _report_clipping(desc: str, peak: float) -> None:
    """A warning for the first input whose peak exceeds full scale, debug lines after it (a
    folder of loud recordings would otherwise print one line per file)."""
    global _clipping_reported
    if _clipping_reported:
        log.debug("%s: peak %.3f exceeds full scale; clipped to [-1, 1]", desc, peak)
        return
    _clipping_reported = True
    log.warning(
        "%s: peak %.3f exceeds full scale; clipped to [-1, 1] (other inputs that clip are "
        "not reported again; -v lists them)",
        desc,
        peak,
    )


def resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling of a mono signal with soxr (high quality)."""
    if orig_sr == target_sr:
        return x
    import soxr

    return soxr.resample(x, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def stream_audio(
    source: Source,
    target_sr: int = DEFAULT_SAMPLE_RATE,
    max_duration_s: float | None = None,
    name: str | None = None,
) -> Iterator[np.ndarray]:
    """Decode block by block: yields mono float32 chunks at ``target_sr``.

    Memory stays bounded by the block size whatever the file length. Errors are
    :class:`AudioError`, raised when they are met (a corrupt tail after good blocks too).
    """
    desc = _describe(source, name)
    max_s = float("inf") if max_duration_s is None else float(max_duration_s)
    with _open_decoder(source, desc, max_s) as (sr, blocks):
        rs = None
        if sr != target_sr:
            import soxr

            rs = soxr.ResampleStream(sr, target_sr, 1, dtype="float32", quality="HQ")
        n = 0
        clipped = 0.0
        for block in blocks:
            if not np.all(np.isfinite(block)):
                bad = int(np.sum(~np.isfinite(block)))
                raise AudioError(
                    desc,
                    f"invalid samples: {bad} are NaN or infinite (a broken float WAV?)",
                    kind="invalid_samples",
                )
            x = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
            n += x.shape[0]
            if rs is not None:
                x = rs.resample_chunk(np.ascontiguousarray(x))
            if x.size:
                peak = float(np.max(np.abs(x)))
                if peak > 1.0:
                    clipped = max(clipped, peak)
                    x = np.clip(x, -1.0, 1.0)
                yield np.ascontiguousarray(x, dtype=np.float32)
        if rs is not None:
            tail = rs.resample_chunk(np.zeros(0, np.float32), last=True)
            if tail.size:
                yield np.clip(tail, -1.0, 1.0).astype(np.float32, copy=False)
        if n == 0:
            raise AudioError(desc, "the file holds zero audio samples", kind="empty")
        if clipped:
            _report_clipping(desc, clipped)


def load_audio(
    source: Source,
    target_sr: int = DEFAULT_SAMPLE_RATE,
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
    name: str | None = None,
) -> np.ndarray:
    """Decode a file (path or bytes) to mono float32 in [-1, 1] at ``target_sr``.

    Args:
        source: a path, or the bytes of an encoded file.
        target_sr: output sample rate in Hz.
        max_duration_s: reject audio longer than this (seconds); None for no limit.
        name: how to name the input in error messages (defaults to the path).

    Returns:
        (L,) float32 array.

    Raises:
        AudioError: missing, empty, unreadable, corrupt or truncated input, no samples,
            non-finite samples, or audio over the duration limit.
    """
    chunks = list(stream_audio(source, target_sr, max_duration_s, name))
    return np.concatenate(chunks) if len(chunks) != 1 else chunks[0]


#: file extensions taken as audio when a folder is listed
AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".opus", ".webm", ".mp4")


def audio_files(folder, recursive: bool = False) -> list[str]:
    """The audio files of a folder (by extension; sub-folders too when ``recursive``),
    sorted."""
    it = Path(folder).rglob("*") if recursive else Path(folder).glob("*")
    return sorted(str(f) for f in it if f.is_file() and f.suffix.lower() in AUDIO_EXTS)


#: raw sample formats of live streams: bytes per sample
RAW_FORMATS = {"s16le": 2, "f32le": 4, "mulaw": 1, "alaw": 1}


def _g711_tables() -> dict[str, np.ndarray]:
    """16-bit linear values of the 256 G.711 codes (ITU-T G.711 expansion)."""
    codes = np.arange(256)
    u = ~codes & 0xFF  # mu-law: bits are inverted on the line
    exp, man = (u >> 4) & 0x07, u & 0x0F
    mu = (((man << 3) + 0x84) << exp) - 0x84
    mu = np.where(u & 0x80, -mu, mu)
    a = codes ^ 0x55  # A-law: even bits are inverted on the line
    exp, man = (a >> 4) & 0x07, a & 0x0F
    al = np.where(exp == 0, (man << 4) + 8, ((man << 4) + 0x108) << np.maximum(exp - 1, 0))
    al = np.where(a & 0x80, al, -al)
    return {"mulaw": mu.astype(np.int16), "alaw": al.astype(np.int16)}


_G711 = _g711_tables()


class RawDecoder:
    """Raw sample bytes of a live stream (``s16le``, ``f32le``, 8-bit G.711 ``mulaw`` or
    ``alaw``; interleaved ``channels``) -> mono float32 in [-1, 1], in pieces of any length (a
    sample split across pieces waits for the rest)."""

    def __init__(self, fmt: str = "s16le", channels: int = 1):
        if fmt not in RAW_FORMATS:
            raise AudioError(
                "<stream>", f"unknown sample format {fmt!r}; one of {', '.join(RAW_FORMATS)}"
            )
        if int(channels) < 1:
            raise AudioError("<stream>", f"channels must be >= 1, got {channels}")
        self.fmt, self.channels = fmt, int(channels)
        self.frame = RAW_FORMATS[fmt] * self.channels
        self._rest = b""

    @property
    def leftover(self) -> int:
        """Bytes waiting for the rest of their sample frame (at the end: a cut frame)."""
        return len(self._rest)

    def __call__(self, data: bytes) -> np.ndarray:
        data = self._rest + bytes(data)
        n = len(data) // self.frame * self.frame
        body, self._rest = data[:n], data[n:]
        if self.fmt == "s16le":
            x = np.frombuffer(body, "<i2").astype(np.float32) / 32768.0
        elif self.fmt == "f32le":
            x = np.frombuffer(body, "<f4").astype(np.float32)
            if not np.all(np.isfinite(x)):
                raise AudioError(
                    "<stream>", "invalid samples: NaN or infinite values", kind="invalid_samples"
                )
        else:
            x = _G711[self.fmt][np.frombuffer(body, np.uint8)].astype(np.float32) / 32768.0
        if self.channels > 1:
            x = x.reshape(-1, self.channels).mean(axis=1)
        return x


#: the first bytes of the containers a pipe may carry (``sniff_container``)
_MAGIC = (b"RIFF", b"RF64", b"OggS", b"fLaC", b"ID3", b"\x1aE\xdf\xa3", b"FORM", b"caff")


def sniff_container(head: bytes) -> bool:
    """Whether the first bytes of a pipe look like an audio container or compressed stream
    (WAV, FLAC, OGG, MP3, WebM/Matroska, AIFF, CAF, MP4/M4A, ADTS AAC) rather than raw
    samples."""
    if head.startswith(_MAGIC) or head[4:8] == b"ftyp":
        return True
    # an MPEG audio (MP3) or ADTS (AAC) frame header: 11 or 12 sync bits
    return len(head) >= 4 and head[0] == 0xFF and (head[1] & 0xF6) in (0xF0, 0xF2, 0xE2, 0xF6)


class _Prefixed(io.RawIOBase):
    """Bytes already read (``head``), then the rest of a binary stream, as one reader."""

    def __init__(self, head: bytes, rest):
        self.head, self.rest = head, rest
        self.count = 0  # bytes given so far

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.head:
            n = min(len(b), len(self.head))
            b[:n], self.head = self.head[:n], self.head[n:]
            self.count += n
            return n
        data = self.rest.read1(len(b)) if hasattr(self.rest, "read1") else self.rest.read(len(b))
        b[: len(data)] = data
        self.count += len(data)
        return len(data)


def _mp3_samples(head: bytes) -> int | None:
    """The samples an MP3 holds by its Xing/Info frame and LAME tag (frames x samples per
    frame - encoder delay - end padding), as FFmpeg counts them for a file it can seek; None
    without those tags."""
    pos = 0
    if head[:3] == b"ID3" and len(head) >= 10:  # an ID3v2 tag first: its syncsafe size
        pos = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(head[6:10]))
        pos += 10 if head[5] & 0x10 else 0
    if len(head) < pos + 4 or head[pos] != 0xFF or head[pos + 1] & 0xE0 != 0xE0:
        return None
    mpeg1 = (head[pos + 1] >> 3) & 3 == 3
    if (head[pos + 1] >> 1) & 3 != 1:  # not Layer III
        return None
    mono = (head[pos + 3] >> 6) & 3 == 3
    x = pos + 4 + ((17 if mono else 32) if mpeg1 else (9 if mono else 17))
    if head[x : x + 4] not in (b"Xing", b"Info") or len(head) < x + 12:
        return None
    flags = int.from_bytes(head[x + 4 : x + 8], "big")
    if not flags & 1:
        return None
    frames = int.from_bytes(head[x + 8 : x + 12], "big")
    tag = x + 12 + (4 if flags & 2 else 0) + (100 if flags & 4 else 0) + (4 if flags & 8 else 0)
    if head[tag : tag + 4] not in (b"LAME", b"Lavf", b"Lavc") or len(head) < tag + 24:
        return None
    b = head[tag + 21 : tag + 24]
    delay, padding = (b[0] << 4) | (b[1] >> 4), ((b[1] & 0x0F) << 8) | b[2]
    n = frames * (1152 if mpeg1 else 576) - delay - padding
    return n if n > 0 else None


def pipe_blocks(head: bytes, rest, desc: str = "<stdin>"):
    """A container read from a pipe as it arrives (``head``: its first bytes, already read;
    ``rest``: the stream they came from): ``(sample_rate, iterator of mono float32
    pieces)``. FFmpeg (PyAV) probes only the first 8 KiB, so the first samples come out
    without waiting for more of the stream."""
    import av

    reader = _Prefixed(head, rest)
    try:
        container = av.open(reader, mode="r", options={"probesize": "8192", "analyzeduration": "0"})
    except (av.error.FFmpegError, ValueError) as e:
        raise AudioError(
            desc,
            f"not a recognised audio stream ({_ffmpeg_reason(e)}); for raw samples give "
            "--input-format s16le|f32le|mulaw|alaw and --input-rate",
        ) from None
    if not container.streams.audio:
        container.close()
        raise AudioError(desc, "the stream holds no audio")
    st = container.streams.audio[0]
    sr = st.codec_context.sample_rate or st.rate
    if not sr:
        container.close()
        raise AudioError(desc, "the audio stream has no sample rate")

    # FFmpeg trims an MP3's end padding only where it can seek: here, by the LAME tag
    left = _mp3_samples(head) if st.codec_context.name in ("mp3", "mp3float") else None

    def mono():
        nonlocal left
        with container:
            for a in _blocks_pyav(container, desc, float("inf")):
                if left is not None:
                    a, left = a[:left], max(0, left - a.shape[0])
                yield a.mean(axis=1) if a.shape[1] > 1 else a[:, 0]
        trunc = _wav_truncation(head, reader.count)  # as for a WAV file
        if trunc:
            raise AudioError(desc, trunc)

    return int(sr), mono()


def official_crop(x: np.ndarray, num_samples: int = OFFICIAL_NUM_SAMPLES) -> np.ndarray:
    """The official AASIST evaluation policy: keep the first ``num_samples``, or tile a
    shorter signal until it fills ``num_samples``.

    Args:
        x: (L,) waveform with L >= 1.
    Returns:
        (num_samples,) waveform.
    """
    n = x.shape[-1]
    if n == 0:
        raise ValueError("official_crop: empty signal")
    if n >= num_samples:
        return x[..., :num_samples]
    reps = num_samples // n + 1
    return np.tile(x, reps)[..., :num_samples]


def random_crop(
    x: np.ndarray, num_samples: int = OFFICIAL_NUM_SAMPLES, rng: np.random.Generator | None = None
) -> np.ndarray:
    """The training policy: a random window of ``num_samples``, tiling a shorter signal first.

    Args:
        x: (L,) waveform.
        rng: numpy Generator (seed it for reproducibility).
    """
    n = x.shape[-1]
    if n == 0:
        raise ValueError("random_crop: empty signal")
    if n <= num_samples:
        return official_crop(x, num_samples)
    rng = rng if rng is not None else np.random.default_rng()
    start = int(rng.integers(0, n - num_samples + 1))
    return x[..., start : start + num_samples]


def probe_duration(source: Source) -> float | None:
    """Seconds of audio the header declares (nothing is decoded), or None when it does not say
    or cannot be read (decoding reports the problem later). The service uses it to cap a batch
    and to route long uploads before any work is done."""
    import soundfile as sf

    def opener():
        if isinstance(source, bytes | bytearray | memoryview):
            return io.BytesIO(bytes(source))
        return open(source, "rb")

    try:
        with opener() as fh:
            info = sf.info(fh)
        if info.samplerate < MIN_SAMPLE_RATE:  # refused before decoding: no audio to count
            return None
        if info.frames > 0:
            return info.frames / info.samplerate
    except Exception:  # noqa: BLE001 - not a libsndfile format: ask FFmpeg
        pass
    try:
        import av

        with opener() as fh, av.open(fh, mode="r") as c:
            if c.duration:
                return c.duration / 1e6
            st = c.streams.audio[0] if c.streams.audio else None
            if st is not None and st.duration and st.time_base:
                return float(st.duration * st.time_base)
    except Exception:  # noqa: BLE001
        return None
    return None
