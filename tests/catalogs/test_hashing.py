"""Content hashes equal hashlib's SHA-256 and the blake3 package's, for every size of file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import blake3
import pytest

from runlog_store import hash_file, hash_files
from runlog_store.exceptions import HashError, StorageError
from runlog_store.hashing import format_data_hash, parse_data_hash

SIZES = [0, 1, 4095, 4096, 65537, (1 << 20) + 3, (4 << 20), (9 << 20) + 7]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _blake3(path: Path) -> str:
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    hasher.update_mmap(str(path))
    return hasher.hexdigest()


@pytest.fixture(scope="module")
def random_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("random")
    files = []
    for size in SIZES:
        path = folder / f"f{size}"
        path.write_bytes(os.urandom(size))
        files.append(path)
    return files


@pytest.mark.parametrize("algorithm", ["sha256", "blake3"])
def test_digests_equal_the_reference_implementations(
    random_files: list[Path], algorithm: str
) -> None:
    reference = _sha256 if algorithm == "sha256" else _blake3
    expected = [reference(p) for p in random_files]
    assert [hash_file(p, algorithm) for p in random_files] == expected  # type: ignore[arg-type]
    assert hash_files(random_files, algorithm) == expected  # type: ignore[arg-type]
    assert hash_files(random_files, algorithm, jobs=1) == expected  # type: ignore[arg-type]


def test_empty_file_hashes_to_the_empty_digest(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.touch()
    assert hash_file(empty, "sha256") == hashlib.sha256(b"").hexdigest()
    assert hash_file(empty) == blake3.blake3(b"").hexdigest()


def test_multi_gib_sparse_file_every_byte(tmp_path: Path) -> None:
    """3 GiB (over runnable's 1 GiB fingerprint limit), mostly a hole, data at both ends and in
    the middle: a flipped byte anywhere changes the digest."""
    path = tmp_path / "sparse.bin"
    size = 3 << 30
    marks = {0: b"head", (3 << 29) + 11: b"middle", size - 4: b"tail"}
    with open(path, "wb") as handle:
        handle.truncate(size)
        for offset, data in marks.items():
            handle.seek(offset)
            handle.write(data)
    assert os.stat(path).st_blocks * 512 < 1 << 20, "the test file must stay sparse"
    assert hash_file(path) == _blake3(path)
    sha = hash_file(path, "sha256")
    assert sha == _sha256(path)
    with open(path, "r+b") as handle:
        handle.seek((3 << 29) + 11)
        handle.write(b"Middle")
    assert hash_file(path, "sha256") != sha


def test_bad_files_fail_one_by_one_naming_the_path(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_bytes(b"fine")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    paths = [good, tmp_path / "vanished", tmp_path, fifo, Path("/proc/self/mem")]
    results = hash_files(paths, return_exceptions=True)
    assert results[0] == blake3.blake3(b"fine").hexdigest()
    errors = results[1:]
    assert all(isinstance(e, HashError) for e in errors)
    assert [e.path for e in errors if isinstance(e, HashError)] == [str(p) for p in paths[1:]]
    missing, folder, special, unreadable = errors
    assert isinstance(missing, HashError) and missing.errno == 2
    assert "directory" in str(folder)
    assert "FIFO" in str(special)
    assert isinstance(unreadable, HashError) and unreadable.errno == 5  # EIO, even for root
    assert isinstance(missing, StorageError) and isinstance(missing, OSError)
    with pytest.raises(HashError) as raised:
        hash_files(paths)
    assert raised.value.path == str(paths[1])


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="md5"):
        hash_file(tmp_path, "md5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="jobs"):
        hash_files([], jobs=0)


def test_data_hash_forms() -> None:
    hex_digest = "ab" * 32
    assert format_data_hash("sha256", hex_digest) == hex_digest
    assert format_data_hash("blake3", hex_digest) == f"blake3:{hex_digest}"
    assert parse_data_hash(hex_digest) == ("sha256", hex_digest)
    assert parse_data_hash(f"blake3:{hex_digest}") == ("blake3", hex_digest)
    assert parse_data_hash(f"sha256:{hex_digest}") == ("sha256", hex_digest)
    assert parse_data_hash("md5:abc") is None
    assert parse_data_hash("not-a-hash") is None
