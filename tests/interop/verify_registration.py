#!/usr/bin/env python3
"""Independent check of a captured mpagent registration request (wire.md §1-§4, §6).

Usage: verify_registration.py REQUEST_FILE

REQUEST_FILE holds the whole HTTP request as sent (head + multipart body). Written from the spec
alone with Python's standard XML parser and `cryptography` (OpenSSL): it shares no code with the
Rust core. Exits 0 when the request is well-formed and its signature verifies, 1 with a reason
otherwise.
"""
import re
import sys
import xml.etree.ElementTree as ET

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

BOUNDARY = b"aAbBcCdDv1234567890VxXyYzZ"
HEADER_ORDER = ["Body", "CorrelationID", "Hooks", "ID", "Payload", "Priority", "Protocol",
                "ReplyMode", "ReplyTo", "SentTime", "SourceID", "SourceHost", "TargetAddress",
                "TargetEndpoint", "TargetHost", "Timeout"]


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def main(path):
    raw = open(path, "rb").read()
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

    # Multipart layout, exactly as wire.md §2 gives it.
    m = re.fullmatch(
        rb"--" + BOUNDARY + rb"\r\ncontent-type: text/plain; charset=UTF-16\r\n\r\n(.*)\r\n--"
        + BOUNDARY + rb"\r\ncontent-type: application/octet-stream\r\n\r\n(.*)\r\n--" + BOUNDARY + rb"--",
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
    if header.findtext("TargetEndpoint") != "MP_ClientRegistration":
        fail("TargetEndpoint")
    if not re.fullmatch(r"\{[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\}", header.findtext("ID") or ""):
        fail("message ID is not an upper-case braced GUID")
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", header.findtext("SentTime") or ""):
        fail("SentTime")
    b = header.find("Body")
    length = int(b.get("Length"))
    if b.get("Type") != "ByteRange" or b.get("Offset") != "0":
        fail("Body range attributes")
    if not octets.endswith(b"\x00\x00\r\n") or len(octets) - 2 != length:
        fail(f"Body Length {length} does not match the octet part ({len(octets)} bytes incl. CRLF)")
    body_xml = octets[:-4]
    if body_xml.startswith(b"\xff\xfe"):
        fail("body must have no BOM")
    text = body_xml.decode("utf-16-le")
    root = ET.fromstring(text)  # a real XML parser: the body must be well-formed
    if root.tag != "ClientRegistrationRequest":
        fail("body root")
    data = root.find("Data")
    sigval = root.findtext("Signature/SignatureValue")
    if data is None or not sigval:
        fail("Data or SignatureValue missing")
    ai = data.find("AgentInformation")
    if ai is None or ai.get("AgentType") not in ("0", "4", "8"):
        fail("AgentInformation/AgentType")
    if data.get("RequestType") not in ("Registration", "Confirmation"):
        fail("RequestType")
    props = {p.get("Name"): p.get("Value") for p in data.findall("DiscoveryProperties/Property")}
    for name in ("Netbios Name", "FQ Name", "Locale ID", "InternetFlag"):
        if name not in props:
            fail(f"discovery property {name!r} missing")
    signing_hex = data.findtext("Certificates/Signing")
    if not signing_hex or signing_hex != signing_hex.upper():
        fail("Signing certificate hex missing or not upper case")
    cert = x509.load_der_x509_certificate(bytes.fromhex(signing_hex))

    # The signed bytes: the exact characters of <Data ...>...</Data>, UTF-16LE, no BOM.
    start = text.index("<Data ")
    end = text.index("</Data>") + len("</Data>")
    signed = text[start:end].encode("utf-16-le")
    sig = bytes.fromhex(sigval)
    alg = data.get("HashAlgorithm")
    key = cert.public_key()
    try:
        if alg == "1.2.840.10045.4.3.2":
            if not isinstance(key, ec.EllipticCurvePublicKey) or len(sig) != 64:
                fail("ECDSA: key type or r||s length")
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
            key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
        elif alg == "1.2.840.113549.1.1.11":
            if not isinstance(key, rsa.RSAPublicKey):
                fail("RSA: key type")
            key.verify(sig[::-1], signed, padding.PKCS1v15(), hashes.SHA256())
        else:
            fail(f"unknown HashAlgorithm {alg!r}")
    except InvalidSignature:
        fail("signature does not verify over the UTF-16LE bytes of <Data>")
    print(f"OK: {alg} signature verifies; SMSID={data.get('SMSID')!r} AgentType={ai.get('AgentType')}")


if __name__ == "__main__":
    main(sys.argv[1])
