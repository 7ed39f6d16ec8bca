"""The llama.cpp test client: its build flags never depend on the build machine's newest
extensions, and a native crash inside llama.cpp fails one test, naming the signal."""

import signal

import install_llama_cpp as inst
import llama_ops
import pytest

X86_AVX2 = {"avx", "avx2", "fma", "f16c", "sse4_2"}
AVX512 = set(inst.AVX512)
AMX = {"amx_tile", "amx_int8", "amx_bf16", "avx512_bf16", "avx512_vnni", "avx512vbmi"}


def opts(args):
    return dict(a[2:].split("=") for a in args)


@pytest.mark.parametrize("flags, avx2, avx512", [
    (X86_AVX2, "ON", "OFF"),                      # AMD Zen 3
    (X86_AVX2 | AVX512 | {"avx512_bf16"}, "ON", "ON"),   # AMD Zen 5
    (X86_AVX2 | AVX512 | AMX, "ON", "ON"),        # Intel Sapphire/Emerald Rapids
    (X86_AVX2 | {"avx512f"}, "ON", "OFF"),        # AVX-512 only in part: not used
    ({"sse4_2"}, "OFF", "OFF"),                   # an old x86-64
])
def test_x86_flags_are_portable_and_never_amx(flags, avx2, avx512):
    o = opts(inst.cmake_args(flags, "x86_64"))
    assert o["GGML_NATIVE"] == "OFF"
    for name in ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16", "GGML_AVX512_BF16",
                 "GGML_AVX512_VNNI", "GGML_AVX512_VBMI", "GGML_AVX_VNNI"):
        assert o[name] == "OFF", name
    assert (o["GGML_AVX2"], o["GGML_FMA"], o["GGML_F16C"]) == (avx2, avx2, avx2)
    assert o["GGML_AVX512"] == avx512


def test_arm64_flags_are_the_baseline():
    o = opts(inst.cmake_args({"fp", "asimd", "bf16", "i8mm"}, "aarch64"))
    assert o["GGML_NATIVE"] == "OFF" and "GGML_AVX2" not in o


def test_each_flag_set_has_its_own_wheel_store():
    a = inst.store_dir(inst.cmake_args(X86_AVX2, "x86_64"))
    b = inst.store_dir(inst.cmake_args(X86_AVX2 | AVX512, "x86_64"))
    assert a != b and inst.VERSION in a.name


@pytest.mark.parametrize("sig", [signal.SIGILL, signal.SIGSEGV])
def test_a_native_crash_fails_the_call_naming_the_signal(sig):
    with pytest.raises(llama_ops.ChildDied, match=sig.name) as e:
        llama_ops.run("_crash", sig)
    assert e.value.signum == sig


def test_an_exception_in_the_child_is_reported():
    with pytest.raises(llama_ops.ChildFailed, match="KeyError"):
        llama_ops.run("vocab_missing_op_name")
