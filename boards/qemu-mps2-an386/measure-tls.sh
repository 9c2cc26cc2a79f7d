#!/usr/bin/env bash
# Native mode's cost in QEMU: for an ECDSA (P-256) and an RSA-2048 MP certificate, on TLS 1.2 and 1.3,
# boots the native image under -icount shift=0 (1 ms logged = 1 M instructions) against the MP
# emulator and prints the handshake time, the TLS pool's peak and the stack. Needs the native ELF
# (cargo build --release --features native --target-dir target/native), mpagent-sim
# (cargo build -p mpagent-sim), openssl, qemu-system-arm and defmt-print.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
S=${MPAGENT_SIM:-$root/target/debug/mpagent-sim}
ELF=${ELF:-$root/boards/qemu-mps2-an386/target/native/thumbv7em-none-eabihf/release/mpagent-qemu-mps2-an386}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
$S pki init --dir pki >/dev/null
$S pki issue --dir pki --cn mp.test --kind server --dns 10.0.2.2 >/dev/null
$S pki issue --dir pki --cn QEMU-1 --kind device >/dev/null
# An RSA-2048 server certificate from the same CA, with OpenSSL.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out pki/rsa-mp.key.pem 2>/dev/null
openssl req -new -key pki/rsa-mp.key.pem -subj /CN=mp.test -out pki/rsa-mp.csr
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:10.0.2.2\nauthorityKeyIdentifier=keyid\n' > pki/ext.cnf
openssl x509 -req -in pki/rsa-mp.csr -CA pki/ca.pem -CAkey pki/ca.key.pem -days 30 -set_serial 77 -extfile pki/ext.cnf -out pki/rsa-mp.pem 2>/dev/null
port=18443
for kind in ecdsa rsa; do
  for v in 1.2 1.3; do
    if [ $kind = ecdsa ]; then cert=pki/mp.test.pem; key=pki/mp.test.key.pem; else cert=pki/rsa-mp.pem; key=pki/rsa-mp.key.pem; fi
    port=$((port+1))
    $S mp serve --listen 127.0.0.1:$port --db site-$kind-$v.db --site-code PS1 --tls-cert $cert --tls-key $key --client-ca pki/ca.pem > mp-$kind-$v.log 2>&1 &
    mp=$!
    sleep 1
    st=state-$kind-$v; mkdir -p $st
    cp pki/ca.der $st/ca.der; cp pki/QEMU-1.der $st/client.der; cp pki/QEMU-1.key.pk8 $st/client-key.der
    printf "mp=https://10.0.2.2:$port\nsite=PS1\nname=QEMU-1\ntls_version=$v\nmax_failures=1\n" > $st/mpagent.cfg
    (cd $st && timeout 300 qemu-system-arm -M mps2-an386 -nographic -monitor none -serial none -icount shift=0 \
      -semihosting-config enable=on,target=native -nic user,model=lan9118 -kernel "$ELF" | defmt-print -e "$ELF" > ../boot-$kind-$v.log 2>&1) || true
    kill $mp; wait $mp 2>/dev/null || true
    echo "== $kind $v"; grep -E "tls=|tls pool|peak stack|done|failed" boot-$kind-$v.log | head -8
  done
done
