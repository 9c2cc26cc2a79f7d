"""Verify, with OpenSSL (Python `cryptography`), the signature the size probe's assembly P-256
signer printed (`boards/size-probe --features p256-asm,measure`): the line
`p256-asm signature check: key [..] digest [..] signature [..]` on standard input, raw r||s over
a prehashed SHA-256 digest. Exits non-zero if the line is missing or the signature is refused."""
import re
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

line = next((l for l in sys.stdin if l.startswith("p256-asm signature check: ")), None)
if line is None:
    sys.exit("verify_p256_asm: no 'p256-asm signature check' line in the probe's output")
key, digest, sig = (bytes(int(b, 16) for b in m.split(", ")) for m in re.findall(r"\[([0-9a-f, ]+)\]", line))
public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key)
der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
public.verify(der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
print("p256-asm signature verified by OpenSSL")
