from __future__ import annotations

import pytest

from keyless.dists import is_allowed_platform


@pytest.mark.parametrize(
    "platform",
    [
        "any",
        "win32",
        "win_amd64",
        "win_arm64",
        "manylinux1_x86_64",
        "manylinux2010_i686",
        "manylinux2014_aarch64",
        "manylinux2014_ppc64",
        "manylinux_2_17_x86_64",
        "manylinux_2_28_ppc64",
        "manylinux_2_31_riscv64",
        "musllinux_1_1_x86_64",
        "musllinux_1_2_armv7l",
        "linux_armv6l",
        "linux_armv7l",
        "macosx_10_9_x86_64",
        "macosx_10_15_universal2",
        "macosx_11_0_arm64",
        "macosx_14_0_universal2",
        "macosx_26_0_arm64",
        "ios_13_0_arm64_iphoneos",
        "ios_13_0_x86_64_iphonesimulator",
        "android_21_arm64_v8a",
        "android_24_x86_64",
        "pyemscripten_2024_0_wasm32",
    ],
)
def test_pypi_allows_platforms_with_an_abi_spec(platform: str) -> None:
    assert is_allowed_platform(platform)


@pytest.mark.parametrize(
    "platform",
    [
        "linux_x86_64",
        "linux_aarch64",
        "linux_i686",
        "manylinux2014_riscv64",
        "musllinux_1_2_ppc64",  # ppc64 (big endian) is manylinux-only
        "manylinux_2_17_sparc",
        "macosx_11_1_arm64",  # since macOS 11 only the major version counts
        "macosx_16_0_arm64",  # no such release
        "macosx_10_9_sparc",
        "ios_13_0_armv7_iphoneos",
        "android_21_mips",
        "pyemscripten_2024_0_wasm64",
        "freebsd_13_amd64",
        "cygwin_x86_64",
        "",
    ],
)
def test_pypi_refuses_other_platforms(platform: str) -> None:
    assert not is_allowed_platform(platform)
