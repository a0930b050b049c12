"""``versions``, ``doctor``, ``precompile`` and ``clear-cache``: the versions and the GPU kernel
toolchain (what they check is `meshtryoshka_train.doctor`)."""

from __future__ import annotations

import platform
import sys
import time

import click

from .. import __version__
from ..doctor import (
    Finding,
    check_toolchain,
    installed_version,
    kernel_hooks,
    machine_facts,
    versions,
)

__all__ = [
    "clear_cache_command",
    "doctor_command",
    "precompile_command",
    "versions",
    "versions_command",
]


@click.command("versions")
def versions_command() -> None:
    """Print the versions of Python, torch, CUDA, slangtorch and the Meshtryoshka packages."""
    for name, value in versions().items():
        click.echo(f"{name:20s} {value}")


@click.command("doctor")
def doctor_command() -> None:
    """Check the GPU kernel toolchain: versions, GPU, caches, known-bad combinations."""
    click.echo(f"meshtryoshka-train {__version__}, Python {platform.python_version()}")
    hooks, errors = kernel_hooks()
    for error in errors:
        click.echo(f"  {error}")
    if not hooks:
        return
    click.echo("Toolchain")
    for line in hooks[0].describe_toolchain():
        if not line.startswith("loader:"):
            click.echo(f"  {line}")
    findings: list[Finding] = []
    for hook in hooks:
        click.echo(f"{hook.PACKAGE} {installed_version(hook.PACKAGE)}")
        entries = hook.entry_modules()
        click.echo(f"  kernels: {entries[0] if entries else 'none in this version'}")
        package_tool = machine_facts(hook)
        used = package_tool["loader_used"] or "none (the reference backend is used)"
        click.echo(f"  loader:  {used} ({package_tool['loader_note']})")
        for line in hook.describe_cache():
            click.echo(f"  {line}")
        for finding in check_toolchain(package_tool):
            if finding not in findings:
                findings.append(finding)
    click.echo("Checks")
    labels = {"ok": "ok     ", "note": "note   ", "problem": "PROBLEM"}
    for finding in findings:
        click.echo(f"  {labels[finding.level]} {finding.text}")
        if finding.fix:
            click.echo(f"          fix: {finding.fix}")


@click.command("precompile")
def precompile_command() -> None:
    """Compile (or find in the cache) the GPU kernels of both kernel packages now."""
    hooks, errors = kernel_hooks()
    failed = bool(errors)
    for error in errors:
        click.echo(error, err=True)
    for hook in hooks:
        if not hook.entry_modules():
            click.echo(f"{hook.PACKAGE}: no Slang kernels in this version; nothing to compile")
            continue
        tool = hook.toolchain()
        if tool["loader_used"] is None:
            click.echo(f"{hook.PACKAGE}: cannot precompile here: {tool['loader_note']}", err=True)
            failed = True
            continue
        started = time.perf_counter()
        try:
            folder = hook.precompile()
        except RuntimeError as error:
            click.echo(str(error), err=True)
            failed = True
            continue
        click.echo(
            f"{hook.PACKAGE}: ready in {time.perf_counter() - started:.2f} s (cached in {folder})"
        )
    if failed:
        sys.exit(1)


@click.command("clear-cache")
def clear_cache_command() -> None:
    """Delete the cached GPU kernel builds of both kernel packages."""
    hooks, errors = kernel_hooks()
    for error in errors:
        click.echo(error, err=True)
    for hook in hooks:
        entries = hook.cache_entries()
        if not entries:
            click.echo(f"{hook.PACKAGE}: nothing cached in {hook.cache_dir()}")
            continue
        builds = sum(e["kind"] == "build" for e in entries)
        size = sum(e["bytes"] for e in entries) / 2**20
        hook.clear_cache()
        click.echo(
            f"{hook.PACKAGE}: removed {hook.cache_dir()} ({builds} build(s), {size:.1f} MiB)"
        )
