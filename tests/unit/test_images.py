"""ImageStore: content addressing, atomic idempotent writes, refusal of URIs that leave the root."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspection.store.images import ImageStore, ImageStoreError

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8 + b"\xff\xd9"
SECRET = b"outside the store"


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    (tmp_path / "secret.jpg").write_bytes(SECRET)
    return ImageStore(tmp_path / "images")


def test_put_is_content_addressed_and_idempotent(store: ImageStore) -> None:
    digest = hashlib.sha256(JPEG).hexdigest()
    uri = store.put(JPEG)
    assert uri == f"{digest[:2]}/{digest[2:4]}/{digest}.jpg"
    assert (store.root / digest[:2] / digest[2:4] / f"{digest}.jpg").read_bytes() == JPEG
    assert store.put(JPEG) == uri
    files = [p for p in store.root.rglob("*") if p.is_file()]
    assert files == [store.root / uri]  # one file, no temporary left behind
    assert store.get(uri) == JPEG and uri in store
    other = store.put(JPEG + b"\x00")
    assert other != uri and store.get(other) == JPEG + b"\x00"


def test_a_missing_image_is_not_found_and_a_corrupt_one_is_refused(store: ImageStore) -> None:
    missing = ImageStore.uri_for(b"never stored")
    assert missing not in store
    with pytest.raises(FileNotFoundError, match="not in"):
        store.get(missing)
    uri = store.put(JPEG)
    (store.root / uri).write_bytes(b"tampered")
    with pytest.raises(ImageStoreError, match="corrupt"):
        store.get(uri)
    assert store.get(uri, verify=False) == b"tampered"


@pytest.mark.parametrize(
    "uri",
    [
        "../secret.jpg",
        "../../etc/passwd",
        "/etc/passwd",
        "ab/cd/../../../secret.jpg",
        "..\\..\\secret.jpg",
        "",
        "ab/cd/" + "0" * 64 + ".jpg",  # directories disagree with the digest
        "00/00/" + "0" * 64 + ".jpg\x00.txt",
        "00/00/" + "0" * 64 + "/../../../secret.jpg",
        "car-000003/cam-2/shot-5.jpg",
        "00/00/" + "0" * 63 + ".jpg",
        "00/00/" + "0" * 64 + ".JPG",
    ],
)
def test_hostile_uris_are_refused(store: ImageStore, uri: str) -> None:
    with pytest.raises(ImageStoreError, match="not of the form"):
        store.get(uri)
    assert uri not in store


_segments = st.sampled_from(["..", ".", "", "/", "\\", "secret.jpg", "00", "ab", "0" * 64 + ".jpg", "\x00", "~", "%2e%2e"])


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(parts=st.lists(st.one_of(_segments, st.text(max_size=12)), max_size=8), sep=st.sampled_from(["/", "\\", ""]))
def test_no_uri_reads_outside_the_root(store: ImageStore, parts: list[str], sep: str) -> None:
    uri = sep.join(parts)
    try:
        data = store.get(uri)
    except (ImageStoreError, FileNotFoundError):
        return
    assert data != SECRET
    assert store.path_for(uri).resolve().is_relative_to(store.root)


def test_symlinks_under_the_root_are_refused(store: ImageStore, tmp_path: Path) -> None:
    outside = tmp_path / "secret.jpg"
    planted = ImageStore.uri_for(SECRET)
    target = store.root / planted
    target.parent.mkdir(parents=True)
    os.symlink(outside, target)
    with pytest.raises(ImageStoreError, match="symlink"):
        store.get(planted)
    with pytest.raises(ImageStoreError, match="symlink"):
        store.put(SECRET)  # never writes through the link either
    assert outside.read_bytes() == SECRET

    # a symlinked directory on the way
    uri = ImageStore.uri_for(JPEG)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, store.root / uri.split("/")[0])
    with pytest.raises(ImageStoreError, match="symlink"):
        store.put(JPEG)
    assert not any(elsewhere.rglob("*"))


def test_bad_arguments_fail_clearly(store: ImageStore) -> None:
    with pytest.raises(TypeError, match="bytes"):
        store.put("not bytes")  # type: ignore[arg-type]
    with pytest.raises(ImageStoreError, match="suffix"):
        store.put(JPEG, suffix="/../x")
    assert store.get(store.put(JPEG, suffix=".png")) == JPEG


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_files_are_readable_by_others_unless_the_umask_says_otherwise(
    tmp_path: Path, umask: int, file_mode: int, dir_mode: int
) -> None:
    old = os.umask(umask)
    try:
        store = ImageStore(tmp_path / f"images-{umask:o}")
        uri = store.put(JPEG)
    finally:
        os.umask(old)
    path = store.root / uri
    assert path.stat().st_mode & 0o777 == file_mode
    assert path.parent.stat().st_mode & 0o777 == dir_mode


def test_delete_frees_the_file_once(store: ImageStore) -> None:
    uri = store.put(JPEG)
    assert store.delete(uri) == len(JPEG) and uri not in store
    assert store.delete(uri) == 0
    with pytest.raises(ImageStoreError):
        store.delete("../secret.jpg")
