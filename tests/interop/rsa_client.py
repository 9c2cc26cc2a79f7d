#!/usr/bin/env python3
"""Independent RSA registration client in the format of the public tools (docs/protocol.md §1-§4, §6).

Usage: rsa_client.py URL [--sha1] [--no-compress] [--netbios NAME] [--save-cert FILE]

URL is the MP's base, e.g. http://127.0.0.1:8080. Written from the spec with Python's standard
library and `cryptography` only (nothing shared with the Rust code): makes an RSA-2048 key and a
self-signed certificate (CN "ConfigMgr Client", SMS signing + encryption EKUs), builds the
registration request as the public tools do (AgentType 0, `<Data>` laid out over several lines,
signature PKCS#1 v1.5 over the UTF-16LE `<Data>` with SHA-256 -- or SHA-1 and no HashAlgorithm
with --sha1 --, byte-reversed, hex upper; body zlib-compressed with the zlib-compress hook and
ReplyCompression="zlib" unless --no-compress), sends it with CCM_POST, and parses the reply.

Prints `SMSID=GUID:...` and `STATUS=n`; exits 0 only on Status 0, 1 otherwise.
"""
import argparse
import datetime
import http.client
import sys
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
import zlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

BOUNDARY = "aAbBcCdDv1234567890VxXyYzZ"
OID_RSA_SHA256 = "1.2.840.113549.1.1.11"


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def make_identity():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ConfigMgr Client")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=2))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=True, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.ObjectIdentifier("1.3.6.1.4.1.311.101.2"),
                                   x509.ObjectIdentifier("1.3.6.1.4.1.311.101")]),
            critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def utf16le(text):
    return text.encode("utf-16-le")


def build_request(key, cert, netbios, sha1, compress, host):
    cert_hex = cert.public_bytes(serialization.Encoding.DER).hex().upper()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    hash_attr = "" if sha1 else f'HashAlgorithm="{OID_RSA_SHA256}" '
    # Laid out over several lines, as one public tool does: the signature covers these exact bytes.
    data = (
        f'<Data {hash_attr}SMSID="" RequestType="Registration" TimeStamp="{stamp}">\n'
        f'<AgentInformation AgentIdentity="CCMSetup.exe" AgentVersion="5.00.8325.0000" AgentType="0" />\n'
        f'<Certificates><Encryption Encoding="HexBinary" KeyType="1">{cert_hex}</Encryption>'
        f'<Signing Encoding="HexBinary" KeyType="1">{cert_hex}</Signing></Certificates>\n'
        f'<DiscoveryProperties><Property Name="Netbios Name" Value="{netbios}" />\n'
        f'<Property Name="FQ Name" Value="{netbios.lower()}.example.com" />\n'
        f'<Property Name="Locale ID" Value="2057" />\n'
        f'<Property Name="InternetFlag" Value="0" />\n'
        f'</DiscoveryProperties></Data>'
    )
    digest = hashes.SHA1() if sha1 else hashes.SHA256()
    signature = key.sign(utf16le(data), padding.PKCS1v15(), digest)
    signature_hex = signature[::-1].hex().upper()  # CryptoAPI order: little-endian
    body_xml = (f"<ClientRegistrationRequest>{data}<Signature><SignatureValue>{signature_hex}"
                f"</SignatureValue></Signature></ClientRegistrationRequest>")
    body = utf16le(body_xml) + b"\x00\x00"
    length = len(body)
    body += b"\r\n"
    hooks = '<Hooks><Hook3 Name="zlib-compress" /></Hooks>' if compress else ""
    reply_compression = ' ReplyCompression="zlib"' if compress else ""
    message_id = "{" + str(uuid.uuid4()).upper() + "}"
    header = (
        f'<Msg{reply_compression} SchemaVersion="1.1"><Body Type="ByteRange" Length="{length}" Offset="0" />'
        f'<CorrelationID>{{00000000-0000-0000-0000-000000000000}}</CorrelationID>{hooks}'
        f'<ID>{message_id}</ID><Payload Type="inline" /><Priority>0</Priority><Protocol>http</Protocol>'
        f'<ReplyMode>Sync</ReplyMode><ReplyTo>direct:{netbios}:SccmMessaging</ReplyTo>'
        f'<SentTime>{stamp}</SentTime><SourceHost>{netbios}</SourceHost>'
        f'<TargetAddress>mp:MP_ClientRegistration</TargetAddress>'
        f'<TargetEndpoint>MP_ClientRegistration</TargetEndpoint><TargetHost>{host}</TargetHost>'
        f'<Timeout>60000</Timeout></Msg>'
    )
    payload = zlib.compress(body) if compress else body
    multipart = (
        f"--{BOUNDARY}\r\ncontent-type: text/plain; charset=UTF-16\r\n\r\n".encode("ascii")
        + header.encode("utf-16")  # Python writes the BOM FF FE, then little-endian
        + f"\r\n--{BOUNDARY}\r\ncontent-type: application/octet-stream\r\n\r\n".encode("ascii")
        + payload
        + f"\r\n--{BOUNDARY}--".encode("ascii")
    )
    return multipart, message_id


def split_reply(content_type, raw):
    if f'boundary="{BOUNDARY}"' not in content_type and f"boundary={BOUNDARY}" not in content_type:
        fail(f"reply content type {content_type!r}")
    delim = f"--{BOUNDARY}".encode("ascii")
    parts = []
    for chunk in raw.split(delim)[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep or not data.endswith(b"\r\n"):
            fail("malformed reply part")
        parts.append((head.decode("ascii").lower(), data[:-2]))
    if len(parts) != 2:
        fail(f"reply has {len(parts)} parts")
    return parts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--sha1", action="store_true", help="ConfigMgr 2007 style: no HashAlgorithm, SHA-1")
    ap.add_argument("--no-compress", action="store_true")
    ap.add_argument("--netbios", default="PYCLIENT")
    ap.add_argument("--save-cert", help="write the certificate (DER) here")
    args = ap.parse_args()

    url = urllib.parse.urlsplit(args.url)
    if url.scheme != "http" or not url.hostname:
        fail(f"need an http:// URL, got {args.url!r}")
    key, cert = make_identity()
    if args.save_cert:
        with open(args.save_cert, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.DER))
    body, message_id = build_request(key, cert, args.netbios, args.sha1, not args.no_compress, url.hostname)

    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)
    conn.request("CCM_POST", "/ccm_system/request", body=body, headers={
        "Content-Type": f'multipart/mixed; boundary="{BOUNDARY}"',
        "User-Agent": "ConfigMgr Messaging HTTP Sender",
        "Connection": "close",
    })
    resp = conn.getresponse()
    raw = resp.read()
    if resp.status != 200:
        fail(f"HTTP {resp.status}: {raw.decode('utf-8', 'replace').strip()}")
    if not raw:
        fail("empty 200 reply (quiet refusal)")
    (h_head, h_data), (b_head, b_data) = split_reply(resp.getheader("Content-Type", ""), raw)
    if not h_data.startswith(b"\xff\xfe"):
        fail("reply header without BOM")
    header = ET.fromstring(h_data.decode("utf-16"))
    if header.findtext("CorrelationID") != message_id:
        fail(f"CorrelationID {header.findtext('CorrelationID')!r} is not our ID {message_id}")
    hooks = header.find("Hooks")
    hook_names = [h.get("Name") for h in hooks] if hooks is not None else []
    if "zlib-compress" in hook_names:
        b_data = zlib.decompress(b_data)
    # docs/protocol.md §2: a real MP's reply inflates to the UTF-16LE text and one NUL, nothing after it;
    # the public tools decode it as UTF-16, drop exactly one trailing character and parse the rest.
    length = int(header.find("Body").get("Length"))
    if length != len(b_data):
        fail(f"reply Body Length {length}, body part holds {len(b_data)}")
    text = b_data.decode("utf-16-le")
    if not text.endswith("\x00") or text[:-1].endswith("\x00"):
        fail("reply body does not end with exactly one NUL")
    reply = ET.fromstring(text[:-1])
    if reply.tag != "ClientRegistrationResponse":
        fail(f"reply element {reply.tag}")
    status = reply.get("Status")
    smsid = reply.get("SMSID")
    print(f"SMSID={smsid}")
    print(f"STATUS={status}")
    sys.exit(0 if status == "0" and smsid and smsid.startswith("GUID:") else 1)


if __name__ == "__main__":
    main()
