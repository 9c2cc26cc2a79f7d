#!/usr/bin/env python3
"""Independent check of an mpagent self-signed certificate (docs/protocol.md §7).

Usage: check_cert.py CERT.der [--cn NAME] [--not-before UNIX] [--not-after UNIX] [--key ec|rsa]

Parses the DER with Python `cryptography` (OpenSSL underneath, nothing shared with the Rust
code) and asserts: X.509 v3, subject CN (and issuer = subject), validity (not_before <
not_after, and the exact times when given), KeyUsage critical with digitalSignature and
dataEncipherment, both SMS extended key usages, the key and signature algorithm (`--key ec`,
the default: an EC P-256 key and ecdsa-with-SHA256; `--key rsa`: an RSA-2048 key and
sha256WithRSAEncryption), and that the self-signature verifies. Exits 0 on success, 1 with a
message on the first failure.
"""

import argparse
import datetime
import sys

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

EKU_SMS_SIGNING = x509.ObjectIdentifier("1.3.6.1.4.1.311.101.2")
EKU_SMS_ENCRYPTION = x509.ObjectIdentifier("1.3.6.1.4.1.311.101")


class CheckFailed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def utc(unix):
    return datetime.datetime.fromtimestamp(unix, tz=datetime.timezone.utc)


def check_cert(der, cn, not_before, not_after, key_type="ec"):
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as e:
        raise CheckFailed(f"not a DER X.509 certificate: {e}") from e

    check(cert.version == x509.Version.v3, f"version is {cert.version}, want v3")
    check(cert.serial_number > 0, f"serial {cert.serial_number} is not positive")

    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    check(len(cns) == 1, f"subject has {len(cns)} CNs, want 1")
    if cn is not None:
        check(cns[0].value == cn, f"subject CN is {cns[0].value!r}, want {cn!r}")
    check(cert.issuer == cert.subject, "issuer differs from subject (not self-issued)")

    nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
    check(nb < na, f"validity is empty: {nb} .. {na}")
    if not_before is not None:
        check(nb == utc(not_before), f"notBefore is {nb}, want {utc(not_before)}")
    if not_after is not None:
        check(na == utc(not_after), f"notAfter is {na}, want {utc(not_after)}")

    try:
        ku_ext = cert.extensions.get_extension_for_class(x509.KeyUsage)
    except x509.ExtensionNotFound as e:
        raise CheckFailed("no KeyUsage extension") from e
    ku = ku_ext.value
    check(ku_ext.critical, "KeyUsage is not critical")
    check(ku.digital_signature, "KeyUsage lacks digitalSignature")
    check(ku.data_encipherment, "KeyUsage lacks dataEncipherment")
    check(not ku.key_cert_sign, "KeyUsage has keyCertSign")

    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as e:
        raise CheckFailed("no ExtendedKeyUsage extension") from e
    check(EKU_SMS_SIGNING in eku, "EKU lacks SMS signing 1.3.6.1.4.1.311.101.2")
    check(EKU_SMS_ENCRYPTION in eku, "EKU lacks SMS encryption 1.3.6.1.4.1.311.101")

    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        check(not bc.ca, "BasicConstraints says CA:TRUE")
    except x509.ExtensionNotFound:
        pass

    key = cert.public_key()
    if key_type == "rsa":
        check(isinstance(key, rsa.RSAPublicKey), f"public key is {type(key).__name__}, want RSA")
        check(key.key_size == 2048, f"RSA key of {key.key_size} bits, want 2048")
        check(
            cert.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256,
            f"signature algorithm is {cert.signature_algorithm_oid.dotted_string}, want sha256WithRSAEncryption",
        )
        try:
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature as e:
            raise CheckFailed("self-signature does not verify") from e
    else:
        check(isinstance(key, ec.EllipticCurvePublicKey), f"public key is {type(key).__name__}, want EC")
        check(isinstance(key.curve, ec.SECP256R1), f"curve is {key.curve.name}, want secp256r1")
        check(
            cert.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256,
            f"signature algorithm is {cert.signature_algorithm_oid.dotted_string}, want ecdsa-with-SHA256",
        )
        try:
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature as e:
            raise CheckFailed("self-signature does not verify") from e
    # The same through the certificate API (also checks issuer/subject and algorithm match).
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature) as e:
        raise CheckFailed(f"verify_directly_issued_by(self) failed: {e!r}") from e
    return cert


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cert", help="DER certificate file")
    ap.add_argument("--cn", help="expected subject CN")
    ap.add_argument("--not-before", type=int, help="expected notBefore, Unix seconds")
    ap.add_argument("--not-after", type=int, help="expected notAfter, Unix seconds")
    ap.add_argument("--key", choices=["ec", "rsa"], default="ec", help="expected key type")
    args = ap.parse_args()
    with open(args.cert, "rb") as f:
        der = f.read()
    try:
        cert = check_cert(der, args.cn, args.not_before, args.not_after, args.key)
    except CheckFailed as e:
        print(f"check_cert: {args.cert}: FAILED: {e}", file=sys.stderr)
        return 1
    print(f"check_cert: {args.cert}: OK ({len(der)} bytes, serial {cert.serial_number:#x})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
