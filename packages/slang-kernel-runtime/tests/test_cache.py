"""The kernel cache: location, key, one builder at a time across processes, builds that fail or
are killed half way, locks left by killed processes, reports and clearing (CPU)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kernel_runtime_helpers import ENV_CACHE, PACKAGE, PROBE, probe_module

from slang_kernel_runtime import SlangModule, cache, cli


def test_cache_dir_location(monkeypatch, tmp_path):
    module = SlangModule(package=PACKAGE, entry=PROBE)
    monkeypatch.delenv("RUNTIME_PROBE_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert module.cache_dir == tmp_path / "home" / ".cache" / PACKAGE
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert module.cache_dir == tmp_path / "xdg" / PACKAGE
    monkeypatch.setenv("RUNTIME_PROBE_CACHE_DIR", str(tmp_path / "mine"))
    assert module.cache_dir == tmp_path / "mine"


def test_cache_key_covers_sources_loader_and_arch(tmp_path):
    module = probe_module(tmp_path)
    key = module.cache_key("nvrtc", 90)
    assert key == probe_module(tmp_path).cache_key("nvrtc", 90)
    assert module.cache_key("nvrtc", 80) != key
    assert module.cache_key("slangtorch", 90) != key
    helper = tmp_path / "src" / "runtime_probe_util.slang"  # an imported file, not the entry
    helper.write_text(helper.read_text() + "\n// edited\n")
    assert module.cache_key("nvrtc", 90) != key
    (tmp_path / "src" / "new.slang").write_text("// new file\n")
    assert len(module.sources()) == 3


_BUILDER = """
import os, time
from pathlib import Path
from slang_kernel_runtime import cache
go = Path({go!r})
while not go.exists():  # start both processes at the same moment
    time.sleep(0.01)

def build(tmp):
    with open({counter!r}, "a") as f:
        f.write(f"{{os.getpid()}}\\n")
    time.sleep(1.0)
    (tmp / "payload.bin").write_bytes(b"cubin")
    (tmp / "kernels.json").write_text("{{}}")

print(cache.build_cached(Path({folder!r}), build))
"""


def test_two_processes_starting_cold_compile_once(tmp_path):
    folder, counter, go = (
        tmp_path / "cache" / "nvrtc-sm90-key",
        tmp_path / "builds.txt",
        tmp_path / "go",
    )
    folder.parent.mkdir()
    script = _BUILDER.format(go=str(go), counter=str(counter), folder=str(folder))
    workers = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    go.touch()
    outputs = [worker.communicate(timeout=60)[0].strip() for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0]
    assert sorted(outputs) == ["False", "True"]
    assert len(counter.read_text().splitlines()) == 1
    assert (folder / "payload.bin").read_bytes() == b"cubin"
    leftovers = [p.name for p in folder.parent.iterdir()]
    assert sorted(leftovers) == ["nvrtc-sm90-key", "nvrtc-sm90-key.lock"]


def test_failed_build_leaves_nothing_and_the_next_call_builds(tmp_path):
    folder = tmp_path / "k"

    def broken(tmp):
        (tmp / "partial.bin").write_bytes(b"x")
        raise RuntimeError("compiler exploded")

    with pytest.raises(RuntimeError, match="compiler exploded"):
        cache.build_cached(folder, broken)
    assert not folder.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["k.lock"]
    assert cache.build_cached(folder, lambda tmp: (tmp / "kernels.json").write_text("{}"))
    assert not cache.build_cached(folder, lambda tmp: pytest.fail("must not rebuild"))


def test_lock_of_a_killed_process_does_not_block(tmp_path):
    lock = tmp_path / "k.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        waited = []
        with pytest.raises(TimeoutError, match="held by another process"):
            with cache.file_lock(lock, timeout=0.3, on_wait=lambda: waited.append(1)):
                pass
        assert waited == [1]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    assert lock.exists()  # the file stays behind; the lock does not
    start = time.monotonic()
    with cache.file_lock(lock, timeout=5):
        pass
    assert time.monotonic() - start < 1.0


def test_clear_cache_removes_the_package_folder(cache_env):
    module = SlangModule(package=PACKAGE, entry=PROBE)
    (cache_env / "nvrtc-sm90-abc").mkdir(parents=True)
    (cache_env / "nvrtc-sm90-abc" / "kernels.json").write_text("{}")
    module.clear_cache()
    assert not cache_env.exists()
    module.clear_cache()  # no cache: nothing to do


def fill_cache(folder: Path) -> None:
    build = folder / "nvrtc-sm90-0123456789abcdef0123"
    build.mkdir(parents=True)
    (build / "kernels.cubin").write_bytes(b"\0" * 3000)
    table = {"k1": [["x", "tensor", "float32"]], "k2": []}
    info = {"kernels": table, "slangc": "2026.14.1", "nvrtc": "13.0"}
    (build / "kernels.json").write_text(json.dumps(info))
    (folder / "nvrtc-sm90-0123456789abcdef0123.lock").touch()
    (folder / ".nvrtc-sm80-aaaaaaaaaaaaaaaaaaaa.x1y2").mkdir()  # left by a killed build
    (folder / "slangtorch-sm90-bbbbbbbbbbbbbbbbbbbb").mkdir()  # no kernels.json: incomplete


def test_cache_entries_describe_and_clear_cache(cache_env, capsys):
    fill_cache(cache_env)
    module = SlangModule(package=PACKAGE, entry=PROBE)
    entries = {e["name"]: e for e in module.cache_entries()}
    assert [(e["kind"], e["loader"], e["arch"]) for e in entries.values()] == [
        ("temporary", "nvrtc", 80),
        ("build", "nvrtc", 90),
        ("lock", "nvrtc", 90),
        ("incomplete", "slangtorch", 90),
    ]
    build = entries["nvrtc-sm90-0123456789abcdef0123"]
    assert build["kernels"] == 2 and build["slangc"] == "2026.14.1" and build["nvrtc"] == "13.0"
    assert build["bytes"] == 3000 + len((build["path"] / "kernels.json").read_bytes())
    lines = cli.describe_cache(module)
    assert lines[0].startswith(f"cache: {cache_env} (1 build(s), 3.")
    assert "RUNTIME_PROBE_CACHE_DIR" in lines[0]
    assert any("2 kernels, slangc 2026.14.1, NVRTC 13.0" in line for line in lines)
    assert any("left by a killed build" in line for line in lines)
    assert not any(".lock" in line for line in lines)
    assert cli.command_line(module, ["clear-cache"]) == 0
    assert f"removed {cache_env} (1 build(s), 3." in capsys.readouterr().out
    assert not cache_env.exists()
    assert cli.command_line(module, ["clear-cache"]) == 0
    assert "nothing cached" in capsys.readouterr().out


_KILLED_BUILDER = """
import time
from pathlib import Path
from slang_kernel_runtime import cache

def build(tmp):
    (tmp / "kernels.cu").write_text("half written")
    print("building", flush=True)
    time.sleep(120)

cache.build_cached(Path({folder!r}), build)
"""


def test_a_build_killed_half_way_does_not_block_or_leak(tmp_path, monkeypatch):
    folder = tmp_path / "cache" / "nvrtc-sm90-key"
    folder.parent.mkdir()
    script = _KILLED_BUILDER.format(folder=str(folder))
    builder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert builder.stdout.readline().strip() == "building"
    finally:
        builder.send_signal(signal.SIGKILL)
        builder.wait(timeout=10)
    leftovers = sorted(p.name for p in folder.parent.iterdir())
    assert leftovers[0].startswith(".nvrtc-sm90-key.") and leftovers[1:] == ["nvrtc-sm90-key.lock"]
    monkeypatch.setenv(ENV_CACHE, str(folder.parent))
    kinds = {e["name"]: e["kind"] for e in SlangModule(PACKAGE, PROBE).cache_entries()}
    assert kinds[leftovers[0]] == "temporary"
    start = time.monotonic()
    assert cache.build_cached(
        folder, lambda tmp: (tmp / "kernels.json").write_text("{}"), timeout=5
    )
    assert time.monotonic() - start < 1.0
    assert sorted(p.name for p in folder.parent.iterdir()) == [
        "nvrtc-sm90-key",
        "nvrtc-sm90-key.lock",
    ]
