#!/usr/bin/env python3
"""Independent checker of the report framing of docs/protocol.md §5 on one captured `CCM_POST` request.

Usage: report_framing.py REQUEST_FILE   (the raw HTTP request: request line, headers, body)

Written from docs/protocol.md §2, §3 and §5 with Python's standard library only; it shares no code with
the Rust core or the MP emulator. A discovery (`MP_DdrEndpoint`) or hardware inventory
(`MP_HinvEndpoint`) report must travel as:
  octet stream = A || B [|| CRLF], zlib-compressed as a whole when the header lists zlib-compress;
  A, the body       = UTF-16LE (no BOM) of the header-only report + 00 00,
                      <Body Type="ByteRange" Offset="0" Length="len(A)"/>;
  B, the attachment = FF FE + UTF-16LE of the full report, no NUL,
                      <Attachment Type="ByteRange" Offset="len(A)" Length="len(B)" Name="{GUID}"/>.
Prints KEY=VALUE lines and `OK`, or `FAIL: reason` (exit 1).
"""
import re
import sys
import xml.etree.ElementTree as ET
import zlib

GUID_RE = r"\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}"
ACTIONS = {
    "MP_DdrEndpoint": "{00000000-0000-0000-0000-000000000003}",
    "MP_HinvEndpoint": "{00000000-0000-0000-0000-000000000001}",
}


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def http_body(raw):
    """(content type, body) of a raw HTTP request, Content-Length checked."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        fail("no end of the HTTP head")
    lines = head.decode("ascii").split("\r\n")
    if not lines[0].startswith("CCM_POST "):
        fail(f"request line {lines[0]!r} is not a CCM_POST")
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            fail(f"header line {line!r} without a colon")
        headers[name.strip().lower()] = value.strip()
    if int(headers.get("content-length", "-1")) != len(body):
        fail(f"Content-Length {headers.get('content-length')} but {len(body)} body bytes")
    return headers.get("content-type", ""), body


def parts(content_type, body):
    """The two multipart parts as (content type, data)."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.lower().startswith("multipart/mixed") or not m:
        fail(f"Content-Type {content_type!r} is not multipart/mixed with a boundary")
    b = m.group(1).encode("ascii")
    if not body.startswith(b"--" + b + b"\r\n"):
        fail("body does not open with the boundary")
    end = b"\r\n--" + b + b"--"
    close = body.rfind(end)
    if close < 0 or body[close + len(end):] not in (b"", b"\r\n"):
        fail("no closing delimiter at the end")
    chunks = body[len(b) + 4:close].split(b"\r\n--" + b + b"\r\n")
    if len(chunks) != 2:
        fail(f"{len(chunks)} parts, expected header and octet stream")
    out = []
    for c in chunks:
        h, sep, data = c.partition(b"\r\n\r\n")
        if not sep:
            fail("part without a blank line after its headers")
        ct = ""
        for line in h.decode("ascii").split("\r\n"):
            k, _, v = line.partition(":")
            if k.strip().lower() == "content-type":
                ct = v.strip().lower()
        out.append((ct, data))
    if not out[0][0].startswith("text/plain") or out[1][0] != "application/octet-stream":
        fail(f"part types {out[0][0]!r}, {out[1][0]!r}")
    return out[0][1], out[1][1]


def byte_range(el, what):
    if el is None or el.get("Type") != "ByteRange":
        fail(f"{what} is not a ByteRange")
    try:
        return int(el.get("Offset")), int(el.get("Length"))
    except (TypeError, ValueError):
        fail(f"{what} Offset/Length are not numbers")


def utf16(data, what):
    if len(data) % 2:
        fail(f"{what}: odd number of bytes")
    try:
        text = data.decode("utf-16-le")
    except UnicodeDecodeError as e:
        fail(f"{what}: not UTF-16LE ({e})")
    if "\0" in text:
        fail(f"{what}: NUL inside the text")
    return text


def report(text, what):
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        fail(f"{what}: not XML ({e})")
    if root.tag != "Report":
        fail(f"{what}: root <{root.tag}>, expected <Report>")
    if root.find("ReportHeader") is None:
        fail(f"{what}: no ReportHeader")
    return root


def main():
    if len(sys.argv) != 2:
        fail("usage: report_framing.py REQUEST_FILE")
    with open(sys.argv[1], "rb") as f:
        raw = f.read()
    header_part, octets = parts(*http_body(raw))
    if not header_part.startswith(b"\xff\xfe"):
        fail("header part without the BOM FF FE")
    header = ET.fromstring(header_part[2:].decode("utf-16-le").rstrip("\0"))
    endpoint = (header.findtext("TargetEndpoint") or "").strip()
    if endpoint not in ACTIONS:
        fail(f"TargetEndpoint {endpoint!r} carries no report framing")
    body_off, body_len = byte_range(header.find("Body"), "Body")
    atts = header.findall("Attachment")
    if len(atts) != 1:
        fail(f"{len(atts)} Attachment elements, expected one (a single-body report is dropped)")
    att_off, att_len = byte_range(atts[0], "Attachment")
    name = atts[0].get("Name") or ""
    if not re.fullmatch(GUID_RE, name):
        fail(f"Attachment Name {name!r} is not a {{GUID}}")
    hooks = header.find("Hooks")
    compressed = hooks is not None and any(h.get("Name") == "zlib-compress" for h in hooks)
    if compressed:
        d = zlib.decompressobj()
        try:
            stream = d.decompress(octets) + d.flush()
        except zlib.error as e:
            fail(f"octet stream is not zlib ({e})")
        if not d.eof or d.unused_data:
            fail("zlib stream truncated or followed by other bytes")
    else:
        stream = octets
    if body_off != 0 or att_off != body_len:
        fail(f"Body at {body_off}, Attachment at {att_off}: expected 0 and len(A) = {body_len}")
    end = att_off + att_len
    if stream[end:] not in (b"", b"\r\n"):
        fail(f"{len(stream) - end} bytes after the ranges, only a CRLF may follow")
    a, b = stream[:body_len], stream[att_off:end]
    if len(b) != att_len:
        fail(f"stream of {len(stream)} bytes is shorter than the ranges ({end})")
    if a.startswith(b"\xff\xfe"):
        fail("body A carries a BOM")
    if not a.endswith(b"\0\0"):
        fail("body A does not end with the UTF-16 NUL 00 00")
    head_only = report(utf16(a[:-2], "body A"), "body A")
    rb = head_only.find("ReportBody")
    if rb is not None and (len(rb) or (rb.text or "").strip()):
        fail("body A is not the header-only report: its ReportBody has content")
    if not b.startswith(b"\xff\xfe"):
        fail("attachment B does not start with the BOM FF FE")
    full = report(utf16(b[2:], "attachment B"), "attachment B")
    if ET.tostring(head_only.find("ReportHeader")) != ET.tostring(full.find("ReportHeader")):
        fail("the ReportHeader of body A and attachment B differ")
    action = (full.findtext("ReportHeader/InventoryAction/InventoryActionID") or "").strip()
    if action.upper() != ACTIONS[endpoint]:
        fail(f"InventoryActionID {action!r}, expected {ACTIONS[endpoint]} for {endpoint}")
    instances = full.findall("ReportBody/Instance")
    print(f"ENDPOINT={endpoint}")
    print(f"COMPRESSED={'yes' if compressed else 'no'}")
    print(f"CRLF_INSIDE={'yes' if stream[end:] else 'no'}")
    print(f"BODY_BYTES={body_len}")
    print(f"ATTACHMENT_BYTES={att_len}")
    print(f"ATTACHMENT_NAME={name}")
    print(f"INSTANCES={len(instances)}")
    print("OK")


if __name__ == "__main__":
    main()
