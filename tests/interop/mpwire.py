"""What the independent Python verifiers share (docs/protocol.md §1-§3, §6): the HTTP request and
multipart framing of a captured `CCM_POST`, and signature checks in wire form.

Written from the spec alone with Python's standard library and `cryptography` (OpenSSL); it
shares no code with the Rust core. Every check ends the process through `fail` with a reason.
"""
import re
import sys
import xml.etree.ElementTree as ET

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

BOUNDARY = b"aAbBcCdDv1234567890VxXyYzZ"
HEADER_ORDER = ["Body", "Attachment", "CorrelationID", "Hooks", "ID", "Payload", "Priority", "Protocol",
                "ReplyMode", "ReplyTo", "SentTime", "SourceID", "SourceHost", "TargetAddress",
                "TargetEndpoint", "TargetHost", "Timeout"]
ECDSA_P256_SHA256 = "1.2.840.10045.4.3.2"
RSA_SHA256 = "1.2.840.113549.1.1.11"
MESSAGE_ID_RE = r"\{[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\}"


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def algorithm_name(alg):
    """How a HashAlgorithm value (None: absent) is reported."""
    return alg if alg is not None else "no HashAlgorithm (RSA SHA-1)"


def verify(key, alg, sig, data, what):
    """Verify wire-form `sig` over `data` (docs/protocol.md §6). `alg` is the HashAlgorithm OID, or None
    when the attribute/property is absent: ConfigMgr 2007 form, RSA with SHA-1 (docs/protocol.md §4)."""
    try:
        if alg == ECDSA_P256_SHA256:
            if not isinstance(key, ec.EllipticCurvePublicKey) or len(sig) != 64:
                fail(f"{what}: ECDSA key type or r||s length")
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                       int.from_bytes(sig[32:], "big"))
            key.verify(der, data, ec.ECDSA(hashes.SHA256()))
        elif alg in (RSA_SHA256, None):
            if not isinstance(key, rsa.RSAPublicKey):
                fail(f"{what}: RSA key type (no HashAlgorithm means RSA with SHA-1)")
            # CryptoAPI order: the signature goes on the wire byte-reversed.
            h = hashes.SHA256() if alg else hashes.SHA1()
            key.verify(sig[::-1], data, padding.PKCS1v15(), h)
        else:
            fail(f"unknown HashAlgorithm {alg!r}")
    except InvalidSignature:
        fail(f"{what} does not verify ({algorithm_name(alg)})")


def parse_request(raw):
    """Check a captured `CCM_POST` (head + multipart body) and return `(header, octets)`: the
    parsed `<Msg>` header element and the octet-stream part exactly as sent."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        fail("no end of HTTP head")
    lines = head.decode("ascii").split("\r\n")
    if lines[0] != "CCM_POST /ccm_system/request HTTP/1.1":
        fail(f"request line {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("user-agent") != "ConfigMgr Messaging HTTP Sender":
        fail("User-Agent")
    if headers.get("content-type") != 'multipart/mixed; boundary="aAbBcCdDv1234567890VxXyYzZ"':
        fail(f"Content-Type {headers.get('content-type')!r}")
    if int(headers.get("content-length", "-1")) != len(body):
        fail(f"Content-Length {headers.get('content-length')} != {len(body)}")

    # Multipart layout, exactly as docs/protocol.md §2 gives it.
    m = re.fullmatch(
        rb"--" + BOUNDARY + rb"\r\ncontent-type: text/plain; charset=UTF-16\r\n\r\n(.*)\r\n--"
        + BOUNDARY + rb"\r\ncontent-type: application/octet-stream\r\n\r\n(.*)\r\n--" + BOUNDARY
        + rb"--",
        body, re.S)
    if not m:
        fail("multipart layout")
    header_part, octets = m.group(1), m.group(2)
    if not header_part.startswith(b"\xff\xfe"):
        fail("header part lacks the UTF-16LE BOM")
    header = ET.fromstring(header_part[2:].decode("utf-16-le"))
    if header.tag != "Msg":
        fail("header root")
    order = [c.tag for c in header]
    if order != [t for t in HEADER_ORDER if t in order]:
        fail(f"header element order {order}")
    if not re.fullmatch(MESSAGE_ID_RE, header.findtext("ID") or ""):
        fail("message ID is not an upper-case braced GUID")
    b = header.find("Body")
    length = int(b.get("Length"))
    if b.get("Type") != "ByteRange" or b.get("Offset") != "0":
        fail("Body range attributes")
    a = header.find("Attachment")
    if a is not None:
        # Body + attachment (docs/protocol.md §5): A = body + NUL, then B = BOM + report, then CRLF.
        offset, alen = int(a.get("Offset")), int(a.get("Length"))
        if a.get("Type") != "ByteRange" or offset != length:
            fail("Attachment range attributes")
        if not octets.endswith(b"\r\n") or offset + alen != len(octets) - 2:
            fail(f"Attachment range {offset}+{alen} does not end the octet part ({len(octets)} bytes)")
        if octets[length - 2:length] != b"\x00\x00" or octets[offset:offset + 2] != b"\xff\xfe":
            fail("body NUL or attachment BOM missing")
    elif not octets.endswith(b"\x00\x00\r\n") or len(octets) - 2 != length:
        fail(f"Body Length {length} does not match the octet part ({len(octets)} bytes incl. CRLF)")
    if octets.startswith(b"\xff\xfe"):
        fail("body must have no BOM")
    return header, octets
