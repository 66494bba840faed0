"""Which kind of file is this? Decided from the first bytes, never from the name.

People attach photos, voice recordings, short videos and documents to a contribution. Phones
name files oddly (``IMG_0042``, ``audio.bin``) and a name can lie, so the media type kept for
an attachment is the one its content shows. Anything outside the allowed list is refused: the
hub should never receive an executable or a web page that claims to be a photo.

    >>> sniff_media_type(b"\\xff\\xd8\\xff\\xe0\\x00\\x10JFIF\\x00")
    'image/jpeg'
    >>> sniff_media_type(b"MZ\\x90\\x00") is None
    True
    >>> checker = TextChecker()            # plain text is checked on every chunk, not only the head
    >>> checker.feed("Hola, comunidad\\n".encode()); checker.finish()

``SNIFF_BYTES`` is how much of the start of a file ``sniff_media_type`` wants to see.
"""

from __future__ import annotations

import codecs

SNIFF_BYTES = 4096

ALLOWED_MEDIA_TYPES = (
    "image/jpeg", "image/png", "image/webp", "image/gif",
    "audio/mpeg", "audio/ogg", "audio/mp4", "audio/aac", "audio/amr", "audio/wav",
    "video/mp4", "video/3gpp", "video/webm", "video/quicktime",
    "application/pdf", "text/plain",
)

# ISO base media file brands (bytes 8-12 after "ftyp"): audio-only brands first.
_AUDIO_MP4_BRANDS = (b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B ")
_3GPP_BRANDS = (b"3gp", b"3g2", b"3ge", b"3gg", b"3gs")
_QUICKTIME_BRANDS = (b"qt  ",)

# Control characters that plain text written by a person never contains (tab, newline,
# carriage return and form feed are fine).
_BAD_CONTROLS = frozenset(chr(c) for c in range(32) if chr(c) not in "\t\n\r\f") | {"\x7f"}
# A text file that starts like markup is refused: a browser at the hub would run it.
_MARKUP_STARTS = ("<", "\ufeff<")


def sniff_media_type(head: bytes) -> str | None:
    """The allowed media type the bytes ``head`` start, or None when not allowed.

    ``head`` should be the first ``SNIFF_BYTES`` bytes of the file (or all of it if shorter).
    A ``text/plain`` answer only covers the head: check the rest with ``TextChecker``.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"#!AMR"):  # "#!AMR\n" and "#!AMR-WB\n"
        return "audio/amr"
    if head.startswith(b"OggS"):
        page = head[:512]
        if b"OpusHead" in page or b"\x01vorbis" in page or b"Speex   " in page:
            return "audio/ogg"
        return None  # Ogg video (Theora) and others are not on the list
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: WebM or Matroska
        return "video/webm" if b"\x42\x82\x84webm" in head[:64] else None
    if head[4:8] == b"ftyp":
        return _iso_media_type(head[8:12])
    if head.startswith(b"ID3") or _mpeg_audio_frame(head) == "mp3":
        return "audio/mpeg"
    if _mpeg_audio_frame(head) == "aac":
        return "audio/aac"
    if _looks_like_text(head):
        return "text/plain"
    return None


def _iso_media_type(brand: bytes) -> str:
    if brand in _AUDIO_MP4_BRANDS:
        return "audio/mp4"
    if brand[:3] in _3GPP_BRANDS:
        return "video/3gpp"  # phones also record voice as .3gp; the container is the same
    if brand in _QUICKTIME_BRANDS:
        return "video/quicktime"  # what an iPhone records
    return "video/mp4"


def _mpeg_audio_frame(head: bytes) -> str | None:
    """'mp3' for an MPEG audio layer III frame header, 'aac' for an ADTS header."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return None
    version, layer = (head[1] >> 3) & 0b11, (head[1] >> 1) & 0b11
    if layer == 0b01 and version != 0b01:  # layer III, not the reserved version
        bitrate, rate = head[2] >> 4, (head[2] >> 2) & 0b11
        if bitrate not in (0, 0b1111) and rate != 0b11:
            return "mp3"
        return None
    if layer == 0b00 and head[1] & 0xF6 == 0xF0:  # ADTS sync word, layer 0
        return "aac"
    return None


def _looks_like_text(head: bytes) -> bool:
    checker = TextChecker()
    try:
        checker.feed(head)
    except ValueError:
        return False
    return bool(head) and not checker.text_start.lstrip(" \t\r\n").startswith(_MARKUP_STARTS)


class TextChecker:
    """Checks, chunk by chunk, that a file is UTF-8 text without binary control characters.

    ``feed`` and ``finish`` raise ``ValueError`` with a reason when the file is not plain text.
    """

    def __init__(self):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self.text_start = ""

    def feed(self, chunk: bytes) -> None:
        try:
            text = self._decoder.decode(chunk)
        except UnicodeDecodeError:
            raise ValueError("it is not UTF-8 text") from None
        if len(self.text_start) < 64:
            self.text_start += text[:64]
        if not _BAD_CONTROLS.isdisjoint(text):
            raise ValueError("it holds binary data")

    def finish(self) -> None:
        try:
            self._decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ValueError("it ends in the middle of a character") from None
