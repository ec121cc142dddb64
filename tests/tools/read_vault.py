#!/usr/bin/env python3
"""An independent reader of docs/vault-format.md, written from the document and not from the
Rust code: if the two disagree, `tests/it/vault.rs` (which runs this on the vectors and on fresh
vaults) fails.

Usage: read_vault.py VAULT < secrets
  secrets: the passphrase on the first line, the hex of the OATH sealing credential's seed on
  the second (the token's secret, exported for the test; a real token never gives it out).
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
    passphrase, seed = lines[0].encode(), bytes.fromhex(lines[1])
    data = open(path, "rb").read()
    body, checksum = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != checksum:
        raise SystemExit("checksum mismatch")
    r = Reader(body)
    if r.take(8) != b"BRKGLASS":
        raise SystemExit("no magic")
    version = r.u16()
    if version not in (1, 2):
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
        slot["wrapped"] = s.take(48)
        if not s.done():
            raise SystemExit("slot record length")
        slots.append(slot)
    facts = None
    if version == 2:
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
    header = body[: r.pos]
    payload_nonce = r.take(12)
    ciphertext = r.take(r.u32())
    if not r.done():
        raise SystemExit("trailing bytes")

    p = hash_secret_raw(
        passphrase,
        kdf_salt,
        time_cost=passes,
        memory_cost=m_kib,
        parallelism=lanes,
        hash_len=32,
        type=Type.ID,
        version=19,
    )
    for slot in slots:
        if slot["kind"] != OATH:
            continue
        params = Reader(slot["params"])
        params.take(params.u8())  # the sealing credential's name
        challenge = params.take(32)
        t = hmac.new(seed, challenge, hashlib.sha256).digest()
        kek = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=slot["hkdf_salt"],
            info=b"breakglass v1 kek" + vault_id + bytes([slot["id"]]),
        ).derive(p + t)
        try:
            data_key = AESGCM(kek).decrypt(
                slot["wrap_nonce"],
                slot["wrapped"],
                b"breakglass v1 slot" + vault_id + slot["bound"],
            )
        except InvalidTag:
            continue
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
                }
            )
        )
        return
    raise SystemExit("no OATH slot opened with this passphrase and seed")


if __name__ == "__main__":
    main()
