"""store.fs on local paths: URI normalisation and versioned publication (the s3:// side is in
tests/integration/test_s3_uris.py against a real S3 API)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from store import fs


def test_normalize_keeps_uris_and_rejects_squashed_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert fs.normalize("s3://bucket//a/b/") == "s3://bucket/a/b"
    assert fs.join("s3://bucket/a", "b/", "/c") == "s3://bucket/a/b/c"
    assert fs.parent("s3://bucket/a/b") == "s3://bucket/a"
    assert fs.basename("s3://bucket/a/b/") == "b"
    monkeypatch.chdir(tmp_path)
    assert fs.normalize("rel/dir") == str(tmp_path / "rel" / "dir")
    assert fs.normalize("file:///x/y") == "/x/y"
    # what Path("s3://b/k") and Path("s3://b/k").absolute() produce
    for squashed in (str(Path("s3://b/k")), "./s3:/b/k", str(Path("s3://b/k").absolute())):
        with pytest.raises(ValueError, match="lost a slash"):
            fs.normalize(squashed)
    with pytest.raises(ValueError, match="no bucket"):
        fs.normalize("s3://")


def test_list_files_skips_hidden_and_private_names(tmp_path: Path) -> None:
    for rel in ("a/date=1/p.parquet", "a/_work/x.parquet", "a/.tmp/y.parquet", "a/z.json"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    assert fs.list_files(str(tmp_path / "a"), suffix=".parquet") == [str(tmp_path / "a/date=1/p.parquet")]
    assert fs.list_files(str(tmp_path / "missing")) == []


def _publish(pub: fs.Publication, content: str, run_id: str | None = None) -> str:
    v = pub.begin(run_id)
    fs.write_bytes(fs.join(v, "t", "part-0"), content.encode())
    pub.commit(v)
    return fs.basename(v)


def test_local_publication_flips_a_symlink_and_readers_pin_the_version(tmp_path: Path) -> None:
    out = tmp_path / "features"
    pub = fs.Publication(out)
    assert pub.current() is None and fs.resolve(out / "t") == str(out / "t")
    v1 = _publish(pub, "one")
    assert out.is_symlink() and (out / "t" / "part-0").read_text() == "one"
    pinned = fs.resolve(out / "t")          # a reader resolves once ...
    v2 = _publish(pub, "two")
    assert Path(pinned, "part-0").read_text() == "one"        # ... and keeps reading its version
    assert Path(fs.resolve(out / "t"), "part-0").read_text() == "two"
    assert pub.current_version() == v2 and pub.history() == [v1]


def test_crashed_run_is_invisible_and_gc_removes_it_and_old_versions(tmp_path: Path) -> None:
    out = tmp_path / "features"
    pub = fs.Publication(out)
    old = time.time() - 3600
    ids = [time.strftime("%Y%m%dT%H%M%S", time.gmtime(old + i)) + f"-00000{i}" for i in range(4)]
    for i in (0, 1, 2):
        _publish(pub, f"v{i}", ids[i])
    crashed = pub.begin(ids[3])            # a run that died before its commit
    fs.write_bytes(fs.join(crashed, "t", "part-0"), b"half")
    assert pub.current_version() == ids[2]
    assert Path(fs.resolve(out / "t"), "part-0").read_text() == "v2"
    in_flight = pub.begin()                 # started now: gc must leave it alone
    removed = pub.gc(keep=2, before=time.time() - 1)
    assert sorted(removed) == [ids[0], ids[3]]
    assert sorted(fs.list_dirs(pub.versions_root)) == sorted([ids[1], ids[2], fs.basename(in_flight)])
    pub.abort(in_flight)
    assert not Path(in_flight).exists()
    with pytest.raises(fs.StoreError, match="is current"):
        pub.abort(pub.current() or "")


def test_publication_refuses_to_replace_a_plain_directory(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(fs.StoreError, match="not a tandem publication"):
        fs.Publication(tmp_path / "out").begin()


def test_write_bytes_is_whole_or_nothing_locally(tmp_path: Path) -> None:
    target = tmp_path / "d" / "x.json"
    fs.write_json(str(target), {"a": 1})
    assert fs.read_json(str(target)) == {"a": 1}
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]   # no temp file left behind
    with pytest.raises(FileNotFoundError, match="no such file"):
        fs.read_bytes(str(tmp_path / "nope"))
    assert fs.run_time("20260101T000000-abcdef") == 1767225600.0 and fs.run_time("junk") is None
    assert os.path.basename(fs.new_run_id())[8] == "T"


def test_gc_cli_removes_an_old_orphan_and_keeps_the_current_version(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from jobs import gc

    out = tmp_path / "features"
    pub = fs.Publication(out)
    old = time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() - 8 * 3600))
    crashed = pub.begin(f"{old}-0000aa")
    live = _publish(pub, "now")
    assert gc.main(["--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"removed": {str(out): [fs.basename(crashed)]}}
    assert fs.list_dirs(pub.versions_root) == [live]
    assert gc.main(["--out", "s3:/squashed", "--json"]) == 2
