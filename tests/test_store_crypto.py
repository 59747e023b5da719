"""AES-256-GCM envelope encryption, without a database."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from store.crypto import (
    DecryptionError,
    KeyProviderError,
    LocalKeyFileProvider,
    TenantKeyring,
    generate_master_key_file,
    key_provider_from_env,
    wrap_context,
)


def ring(tenant: str = "t1", versions: tuple[int, ...] = (1,)) -> TenantKeyring:
    return TenantKeyring(tenant, {v: os.urandom(32) for v in versions})


def test_round_trip_and_fresh_nonce() -> None:
    r = ring()
    a = r.encrypt("healthcare.medications", "encrypted_generic_name", "m1", "warfarin")
    b = r.encrypt("healthcare.medications", "encrypted_generic_name", "m1", "warfarin")
    assert a != b
    assert a.startswith("pv1.1.")
    assert "warfarin" not in a
    assert r.decrypt("healthcare.medications", "encrypted_generic_name", "m1", a) == "warfarin"


@pytest.mark.parametrize(
    ("table", "column", "row"),
    [
        ("healthcare.medications", "encrypted_generic_name", "m2"),  # another row
        ("healthcare.medications", "encrypted_brand_name", "m1"),  # another column
        ("healthcare.allergies", "encrypted_generic_name", "m1"),  # another table
    ],
    ids=["other-row", "other-column", "other-table"],
)
def test_ciphertext_is_bound_to_its_place(table: str, column: str, row: str) -> None:
    r = ring()
    ct = r.encrypt("healthcare.medications", "encrypted_generic_name", "m1", "warfarin")
    with pytest.raises(DecryptionError) as err:
        r.decrypt(table, column, row, ct)
    assert f"{table}.{column} of row {row}" in str(err.value)
    assert "warfarin" not in str(err.value)


def test_ciphertext_of_another_tenant_fails_even_with_the_same_key() -> None:
    key = os.urandom(32)
    ct = TenantKeyring("t1", {1: key}).encrypt("healthcare.allergies", "encrypted_allergen", "a1", "peanut")
    with pytest.raises(DecryptionError):
        TenantKeyring("t2", {1: key}).decrypt("healthcare.allergies", "encrypted_allergen", "a1", ct)


def test_flipped_byte_is_detected() -> None:
    r = ring()
    ct = r.encrypt("healthcare.allergies", "encrypted_allergen", "a1", "penicillin")
    prefix, body = ct.rsplit(".", 1)
    raw = bytearray(base64.urlsafe_b64decode(body))
    raw[len(raw) // 2] ^= 0x01
    tampered = f"{prefix}.{base64.urlsafe_b64encode(bytes(raw)).decode()}"
    with pytest.raises(DecryptionError, match="authentication failed"):
        r.decrypt("healthcare.allergies", "encrypted_allergen", "a1", tampered)


def test_old_versions_still_decrypt_and_new_writes_use_newest() -> None:
    keys = {1: os.urandom(32)}
    old = TenantKeyring("t1", dict(keys)).encrypt("public.users", "encrypted_last_name", "u1", "Doe")
    keys[2] = os.urandom(32)
    rotated = TenantKeyring("t1", keys)
    assert rotated.decrypt("public.users", "encrypted_last_name", "u1", old) == "Doe"
    assert rotated.encrypt("public.users", "encrypted_last_name", "u1", "Doe").startswith("pv1.2.")


def test_unknown_version_and_garbage_are_named_errors() -> None:
    r = ring()
    with pytest.raises(DecryptionError, match="no data key version 7"):
        r.decrypt("t", "c", "r", "pv1.7.AAAA")
    with pytest.raises(DecryptionError, match="format"):
        r.decrypt("t", "c", "r", "plaintext")


def test_keyring_repr_has_no_key_material() -> None:
    key = os.urandom(32)
    text = repr(TenantKeyring("t1", {1: key}))
    assert key.hex() not in text and base64.b64encode(key).decode() not in text


def test_master_key_wraps_and_a_wrong_master_key_is_a_clear_error(tmp_path: Path) -> None:
    generate_master_key_file(tmp_path / "a.key")
    generate_master_key_file(tmp_path / "b.key")
    a, b = LocalKeyFileProvider(tmp_path / "a.key"), LocalKeyFileProvider(tmp_path / "b.key")
    wrapped = a.wrap(b"k" * 32, wrap_context("t1", 1))
    assert a.unwrap(wrapped, wrap_context("t1", 1)) == b"k" * 32
    with pytest.raises(KeyProviderError, match="wrong master key"):
        b.unwrap(wrapped, wrap_context("t1", 1))
    with pytest.raises(KeyProviderError):
        a.unwrap(wrapped, wrap_context("t2", 1))  # a wrapped key moved to another tenant
    assert a.master_key_id != b.master_key_id


def test_key_file_errors_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(KeyProviderError, match="PRANEYA_MASTER_KEY_FILE is not set"):
        key_provider_from_env({})
    with pytest.raises(KeyProviderError, match=r"PRANEYA_MASTER_KEY_FILE names .* does not exist"):
        key_provider_from_env({"PRANEYA_MASTER_KEY_FILE": str(tmp_path / "missing.key")})
    (tmp_path / "short.key").write_text(base64.b64encode(b"x" * 16).decode())
    with pytest.raises(KeyProviderError, match="32 bytes"):
        LocalKeyFileProvider(tmp_path / "short.key")


def test_integrity_hash_is_keyed_and_stable_across_rotation() -> None:
    k1 = os.urandom(32)
    h1 = TenantKeyring("t1", {1: k1}).integrity_hash(b"content")
    assert h1 == TenantKeyring("t1", {1: k1, 2: os.urandom(32)}).integrity_hash(b"content")
    assert h1 != TenantKeyring("t1", {1: os.urandom(32)}).integrity_hash(b"content")
    assert h1 != TenantKeyring("t1", {1: k1}).integrity_hash(b"content!")
