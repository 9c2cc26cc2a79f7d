#!/usr/bin/env python3
"""Independent check of mpagent's RSA-2048 signer (docs/protocol.md §6).

Usage: verify_rsa.py KEY.pk8 SPKI.der CASES

KEY.pk8 is the private key as the core exports it (PKCS#8 DER), SPKI.der its public key as the
core writes it for certificates, CASES a text file with one case a line:
`sha256|sha1 MESSAGE_HEX SIGNATURE_HEX`, the signature in wire form (byte-reversed, hex).

Written with Python `cryptography` (OpenSSL) alone, nothing shared with the Rust code. Checks
that OpenSSL accepts the private key (it validates RSA keys on load), that the SPKI is the
key's public key, 2048 bits, and, for each case, that the byte-reversed signature verifies as
PKCS#1 v1.5 over the message, equals the one OpenSSL makes (PKCS#1 v1.5 is deterministic), and
that the wire bytes themselves (not reversed) do not verify. Exits 0 on success, 1 with a
message on the first failure.
"""
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mpwire import RSA_SHA256, fail, verify

HASHES = {"sha256": hashes.SHA256, "sha1": hashes.SHA1}
# The HashAlgorithm each hash is announced with (SHA-1: none, the ConfigMgr 2007 form).
OIDS = {"sha256": RSA_SHA256, "sha1": None}


def main(key_path, spki_path, cases_path):
    try:
        key = serialization.load_der_private_key(open(key_path, "rb").read(), password=None)
    except ValueError as e:
        fail(f"OpenSSL refuses the private key: {e}")
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size != 2048:
        fail(f"not an RSA-2048 key: {type(key).__name__}")
    pub = serialization.load_der_public_key(open(spki_path, "rb").read())
    own = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if open(spki_path, "rb").read() != own:
        fail("the SubjectPublicKeyInfo is not the key's (or not DER as OpenSSL writes it)")
    count = 0
    for line in open(cases_path):
        if not line.strip():
            continue
        alg, msg_hex, sig_hex = line.strip().split(" ")  # an empty message is an empty field
        msg, wire = bytes.fromhex(msg_hex), bytes.fromhex(sig_hex)
        if len(wire) != 256:
            fail(f"signature of {len(wire)} bytes")
        sig = wire[::-1]
        verify(pub, OIDS[alg], wire, msg, f"{alg} signature over {msg_hex[:16]}...")
        if key.sign(msg, padding.PKCS1v15(), HASHES[alg]()) != sig:
            fail(f"{alg} signature differs from OpenSSL's")
        if wire != sig:
            try:
                pub.verify(wire, msg, padding.PKCS1v15(), HASHES[alg]())
                fail("the wire bytes verify without reversal: they are not byte-reversed")
            except InvalidSignature:
                pass
        count += 1
    if count == 0:
        fail("no cases")
    print(f"OK: {count} signatures verify; key and SPKI accepted by OpenSSL")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__)
        sys.exit(2)
    main(*sys.argv[1:])
