#!/usr/bin/env python3
"""An independent reader of docs/vault-format.md, written from the document and not from the
Rust code: if the two disagree, `tests/it/vault.rs` (which runs this on the vectors and on fresh
vaults) fails.

Usage: read_vault.py VAULT < secrets
  secrets: the passphrase on the first line (versions 1 and 2), or for version 3 the custodians
  present as NAME<TAB>PASSPHRASE pairs, tab-separated, on that line; the hex of the OATH sealing
  credential's seed on the second (the token's secret, exported for the test; a real token
  never gives it out).
Prints the vault's header facts and its opened payload as one JSON object.

Needs `cryptography` and `argon2-cffi` (PyPI). Handles OATH slots only: the other factors'
secrets stay in their token.
"""

import hashlib
import hmac
import json
import struct
import sys

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

OATH, PIV, FIDO2 = 1, 2, 3


def gf_mul(a, b):
    """Multiplication in GF(2^8) modulo x^8 + x^4 + x^3 + x^2 + 1 (0x11d)."""
    out = 0
    while b:
        if b & 1:
            out ^= a
        a <<= 1
        if a & 0x100:
            a ^= 0x11D
        b >>= 1
    return out


def gf_inv(a):
    """The inverse of a non-zero element: a^254."""
    out = 1
    for _ in range(254):
        out = gf_mul(out, a)
    return out


def combine(shares):
    """Lagrange interpolation at 0 of [(x, y bytes)], byte by byte."""
    secret = bytearray(len(shares[0][1]))
    for i, (xi, yi) in enumerate(shares):
        basis = 1
        for j, (xj, _) in enumerate(shares):
            if i != j:
                basis = gf_mul(basis, gf_mul(xj, gf_inv(xj ^ xi)))
        for k in range(len(secret)):
            secret[k] ^= gf_mul(basis, yi[k])
    return bytes(secret)


def hkdf(salt, ikm, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


class Reader:
    """A cursor over bytes; reading past the end is an error."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack(">H", self.take(2))[0]

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def u64(self):
        return struct.unpack(">Q", self.take(8))[0]

    def done(self):
        return self.pos == len(self.data)


def tlv(data):
    """BER-TLV with one-byte tags (the payload): {tag: value}."""
    r = Reader(data)
    out = {}
    while not r.done():
        tag = r.u8()
        n = r.u8()
        if n == 0x81:
            n = r.u8()
        elif n == 0x82:
            n = r.u16()
        elif n > 0x80:
            raise ValueError("length form")
        out[tag] = r.take(n)
    return out


def main():
    path = sys.argv[1]
    lines = sys.stdin.read().splitlines()
    passphrase, seed = lines[0], bytes.fromhex(lines[1])
    data = open(path, "rb").read()
    body, checksum = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != checksum:
        raise SystemExit("checksum mismatch")
    r = Reader(body)
    if r.take(8) != b"BRKGLASS":
        raise SystemExit("no magic")
    version = r.u16()
    if version not in (1, 2, 3):
        raise SystemExit(f"version {version}")
    vault_id = r.take(16)
    created = r.u64()
    if r.u8() != 1:
        raise SystemExit("KDF id")
    m_kib, passes, lanes = r.u32(), r.u32(), r.u32()
    kdf_salt = r.take(32)
    slots = []
    for _ in range(r.u8()):
        record = r.take(r.u16())
        s = Reader(record)
        slot = {"id": s.u8(), "kind": s.u8()}
        slot["label"] = s.take(s.u8()).decode()
        slot["mfa_serial"] = s.take(s.u16()).decode()
        slot["params"] = s.take(s.u16())
        slot["hkdf_salt"] = s.take(32)
        slot["bound"] = record[: s.pos]
        slot["wrap_nonce"] = s.take(12)
        slot["wrapped"] = s.take(80 if version == 3 else 48)
        if not s.done():
            raise SystemExit("slot record length")
        slots.append(slot)
    facts = None
    if version >= 2:
        f = Reader(r.take(r.u16()))
        entries = []
        for tag in (1, 2, 3):
            if f.u8() != tag:
                raise SystemExit("key facts order")
            entries.append(f.take(f.u8()))
        if not f.done():
            raise SystemExit("key facts length")
        facts = {
            "access_key_id": entries[0].decode(),
            "sealed_at": struct.unpack(">Q", entries[1])[0],
            "generation": struct.unpack(">I", entries[2])[0],
        }
    custodians = None
    if version == 3:
        threshold, n = r.u8(), r.u8()
        custodians = []
        for _ in range(n):
            record = r.take(r.u16())
            c = Reader(record)
            member = {"x": c.u8()}
            member["name"] = c.take(c.u8()).decode()
            member["salt"] = c.take(32)
            member["bound"] = record[: c.pos]
            member["nonce"] = c.take(12)
            member["sealed"] = c.take(48)
            if not c.done():
                raise SystemExit("custodian record length")
            custodians.append(member)
    header = body[: r.pos]
    payload_nonce = r.take(12)
    ciphertext = r.take(r.u32())
    if not r.done():
        raise SystemExit("trailing bytes")

    def argon2id(secret, salt):
        return hash_secret_raw(
            secret.encode(),
            salt,
            time_cost=passes,
            memory_cost=m_kib,
            parallelism=lanes,
            hash_len=32,
            type=Type.ID,
            version=19,
        )

    present = None
    if version == 3:
        words = passphrase.split("\t")
        present = dict(zip(words[0::2], words[1::2]))
    else:
        p = argon2id(passphrase, kdf_salt)
    for slot in slots:
        if slot["kind"] != OATH:
            continue
        params = Reader(slot["params"])
        params.take(params.u8())  # the sealing credential's name
        challenge = params.take(32)
        t = hmac.new(seed, challenge, hashlib.sha256).digest()
        slot_id = bytes([slot["id"]])
        if version == 3:
            kek = hkdf(slot["hkdf_salt"], t, b"breakglass v3 kek" + vault_id + slot_id)
            aad = b"breakglass v3 slot" + vault_id + slot["bound"]
        else:
            kek = hkdf(slot["hkdf_salt"], p + t, b"breakglass v1 kek" + vault_id + slot_id)
            aad = b"breakglass v1 slot" + vault_id + slot["bound"]
        try:
            unwrapped = AESGCM(kek).decrypt(slot["wrap_nonce"], slot["wrapped"], aad)
        except InvalidTag:
            continue
        if version == 3:
            q, k = unwrapped[:32], unwrapped[32:]
            shares = []
            for m in custodians:
                if m["name"] not in present:
                    continue
                c = argon2id(present[m["name"]], m["salt"])
                key = hkdf(m["salt"], c + q, b"breakglass v3 share" + vault_id + bytes([m["x"]]))
                y = AESGCM(key).decrypt(
                    m["nonce"], m["sealed"], b"breakglass v3 share" + vault_id + m["bound"]
                )
                shares.append((m["x"], y))
            if len(shares) < threshold:
                raise SystemExit(f"{len(shares)} custodians present, {threshold} needed")
            p = combine(shares[:threshold])
            data_key = hkdf(kdf_salt, p + k, b"breakglass v3 data key" + vault_id)
        else:
            data_key = unwrapped
        fields = tlv(AESGCM(data_key).decrypt(payload_nonce, ciphertext, header))
        print(
            json.dumps(
                {
                    "version": version,
                    "created": created,
                    "kdf": [m_kib, passes, lanes],
                    "slot": slot["id"],
                    "key_facts": facts,
                    "access_key_id": fields[1].decode(),
                    "secret_access_key": fields[2].decode(),
                    "mfa_serial": fields[3].decode(),
                    "user_arn": fields[4].decode(),
                    "payload_created": struct.unpack(">Q", fields[5])[0],
                    "rotated": struct.unpack(">Q", fields[6])[0],
                    "profile": fields[7].decode() if 7 in fields else None,
                    "custodians": (
                        None
                        if custodians is None
                        else {
                            "threshold": threshold,
                            "names": [m["name"] for m in custodians],
                        }
                    ),
                    "audit_key": fields[8].hex() if 8 in fields else None,
                }
            )
        )
        return
    raise SystemExit("no OATH slot opened with this passphrase and seed")


if __name__ == "__main__":
    main()
