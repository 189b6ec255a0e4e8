"""What a file looks like, from its first bytes (torch-free): for error messages that name the cause.

``model_kind(path)`` names the model-file kind the bytes suggest (``runtime.kinds.sniff`` asks it);
``describe(path)`` returns a short noun phrase ("an HTML page", "an empty file", "a Git LFS pointer (the
real file was never downloaded)") or ``None`` when the bytes do not match anything known.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

SNIFF_BYTES = 4096


def head(path: str | Path, n: int = SNIFF_BYTES) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _text_kind(text: str) -> str | None:
    low = text.lstrip("\ufeff \t\r\n").lower()
    if low.startswith(("<!doctype html", "<html", "<head", "<body")) or "<html" in low[:512]:
        return "an HTML page (a download that saved a web page instead of the file?)"
    if low.startswith("version https://git-lfs"):
        return "a Git LFS pointer (the real file was never downloaded: run `git lfs pull`)"
    if low.startswith("<?xml") or low.startswith("<svg"):
        return "an XML/SVG document"
    if low.startswith(("{", "[")):
        return "a JSON/text document"
    return "a text file"


def _binary_kind(data: bytes) -> str | None:
    signatures = (
        (b"\x89PNG\r\n\x1a\n", "a PNG image"),
        (b"GIF8", "a GIF image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"\x1f\x8b", "a gzip archive"),
        (b"\x93NUMPY", "a NumPy .npy array"),
        (b"%PDF", "a PDF document"),
        (b"\x7fELF", "an executable program (ELF)"),
        (b"7z\xbc\xaf", "a 7-Zip archive"),
        (b"BZh", "a bzip2 archive"),
        (b"\xfd7zXZ", "an xz archive"),
    )
    for magic, kind in signatures:
        if data.startswith(magic):
            return kind
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle"
    return None


def looks_like_safetensors(data: bytes) -> bool:
    """8-byte little-endian header length, then a JSON object."""
    return len(data) >= 9 and data[8:9] == b"{"


def safetensors_header_length(data: bytes) -> int | None:
    if len(data) < 8:
        return None
    return struct.unpack("<Q", data[:8])[0]


def model_kind(path: str | Path) -> str | None:
    """The model-file kind (``runtime.kinds.FILE_KINDS`` key) that ``path``'s first bytes suggest: a
    safetensors header or a torch zip/pickle -> ``checkpoint``, an ONNX ModelProto -> ``onnx``; else None."""
    try:
        data = head(path, 16)
        size = Path(path).stat().st_size
    except OSError:
        return None
    if looks_like_safetensors(data) or data.startswith(b"PK\x03\x04") or data[:1] == b"\x80":
        return "checkpoint"
    if data[:1] == b"\x08" and size > 16:
        return "onnx"  # ModelProto field 1 (ir_version), varint
    return None


def describe(path: str | Path) -> str | None:
    """A short phrase saying what ``path`` looks like, or None if unknown."""
    path = Path(path)
    if path.is_dir():
        return "a folder"
    try:
        data = head(path)
        size = path.stat().st_size
    except OSError as exc:
        return f"an unreadable file ({exc.strerror or exc})"
    if size == 0:
        return "an empty file"
    if data.startswith(b"PK\x03\x04") or data.startswith(b"PK\x05\x06"):
        return _zip_kind(path)
    if looks_like_safetensors(data):
        return "a safetensors file"
    kind = _binary_kind(data)
    if kind:
        return kind
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text and all(c.isprintable() or c in "\r\n\t\ufeff" for c in text[:512]):
        return _text_kind(text)
    return None


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return "a truncated or corrupt ZIP archive (a PyTorch .pth is a ZIP: was the download cut short?)"
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        return "a PyTorch checkpoint (ZIP)"
    sample = ", ".join(names[:3]) or "nothing"
    return f"a ZIP archive that is not a PyTorch checkpoint (it holds {sample})"
