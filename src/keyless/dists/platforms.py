"""PyPI's allow-list of wheel platform tags.

A platform tag names a binary ABI. PyPI only accepts tags that have a published ABI
specification (manylinux, musllinux, macOS, Windows, iOS, Android, Emscripten), because a wheel
tagged e.g. ``linux_x86_64`` was built against one particular distribution and will break on
others. This is PyPI policy, not a standard: private indexes usually serve exactly such wheels.
"""

from __future__ import annotations

import re

_FIXED = frozenset(
    {
        "any",
        "win32",
        "win_arm64",
        "win_amd64",
        "win_ia64",
        "manylinux1_x86_64",
        "manylinux1_i686",
        "manylinux2010_x86_64",
        "manylinux2010_i686",
        "manylinux2014_x86_64",
        "manylinux2014_i686",
        "manylinux2014_aarch64",
        "manylinux2014_armv7l",
        "manylinux2014_ppc64",
        "manylinux2014_ppc64le",
        "manylinux2014_s390x",
        "linux_armv6l",
        "linux_armv7l",
    }
)

_MACOS = re.compile(r"macosx_(\d+)_(\d+)_(.+)\Z")
_MACOS_ARCHES = frozenset(
    {
        "ppc",
        "ppc64",
        "i386",
        "x86_64",
        "arm64",
        "intel",
        "fat",
        "fat3",
        "fat64",
        "universal",
        "universal2",
    }
)
# macOS 10.x counted minor releases; from 11 on only the major number moves, so the minor
# part of the tag must be 0 and only released majors are known.
_MACOS_MAJORS_SINCE_11 = frozenset({"11", "12", "13", "14", "15", "26"})

_GLIBC_OR_MUSL = re.compile(r"(many|musl)linux_\d+_\d+_(.+)\Z")
_MUSLLINUX_ARCHES = frozenset(
    {"x86_64", "i686", "aarch64", "armv7l", "ppc64le", "s390x", "riscv64"}
)
_MANYLINUX_ARCHES = _MUSLLINUX_ARCHES | {"ppc64"}

_IOS = re.compile(r"ios_\d+_\d+_(.+)_(?:iphoneos|iphonesimulator)\Z")
_IOS_ARCHES = frozenset({"arm64", "x86_64"})

_ANDROID = re.compile(r"android_\d+_(.+)\Z")
_ANDROID_ARCHES = frozenset({"armeabi_v7a", "arm64_v8a", "x86", "x86_64"})

_EMSCRIPTEN = re.compile(r"pyemscripten_\d+_\d+_wasm32\Z")


def is_allowed_platform(platform: str) -> bool:
    """Whether PyPI accepts wheels with this platform tag."""
    if platform in _FIXED:
        return True
    if m := _MACOS.match(platform):
        major, minor, arch = m.groups()
        if arch not in _MACOS_ARCHES:
            return False
        return major == "10" or (major in _MACOS_MAJORS_SINCE_11 and minor == "0")
    if m := _GLIBC_OR_MUSL.match(platform):
        libc, arch = m.groups()
        return arch in (_MANYLINUX_ARCHES if libc == "many" else _MUSLLINUX_ARCHES)
    if m := _IOS.match(platform):
        return m.group(1) in _IOS_ARCHES
    if m := _ANDROID.match(platform):
        return m.group(1) in _ANDROID_ARCHES
    return _EMSCRIPTEN.match(platform) is not None
