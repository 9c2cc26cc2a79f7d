#!/usr/bin/env python3
"""Independent check of a captured mpagent registration request (docs/protocol.md §1-§4, §6).

Usage: verify_registration.py REQUEST_FILE

REQUEST_FILE holds the whole HTTP request as sent (head + multipart body). Written from the spec
alone with Python's standard XML parser and `cryptography` (OpenSSL): it shares no code with the
Rust core (framing and signature checks are mpwire.py's; no HashAlgorithm means RSA SHA-1). Exits
0 when the request is well-formed and its signature verifies, 1 with a reason otherwise.
"""
import re
import sys
import xml.etree.ElementTree as ET

from cryptography import x509

from mpwire import algorithm_name, fail, parse_request, verify


def main(path):
    header, octets = parse_request(open(path, "rb").read())
    if header.findtext("TargetEndpoint") != "MP_ClientRegistration":
        fail("TargetEndpoint")
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", header.findtext("SentTime") or ""):
        fail("SentTime")
    body_xml = octets[:-4]
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
    # No HashAlgorithm attribute: the ConfigMgr 2007 form, RSA with SHA-1 (docs/protocol.md §4).
    alg = data.get("HashAlgorithm")
    verify(cert.public_key(), alg, bytes.fromhex(sigval), signed, "signature")
    print(f"OK: {algorithm_name(alg)} signature verifies; SMSID={data.get('SMSID')!r} AgentType={ai.get('AgentType')}")


if __name__ == "__main__":
    main(sys.argv[1])
