"""The one device/precision policy: spellings checked without torch, `auto` resolved to what works here."""
import pytest

from fomm_core.device import check_device, check_precision, choose_precision, resolve_device
from fomm_core.errors import FommError

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("word", ["auto", "CPU", "cuda", "cuda:1", "mps", " cpu "])
def test_device_spellings_are_accepted(word):
    assert check_device(word) == word.strip().lower()


@pytest.mark.parametrize("word", ["gpu", "cuda:", "cuda:x", "cpu0", "tpu", "cuda:1:2"])
def test_other_device_spellings_are_one_sentence(word):
    with pytest.raises(FommError, match="unknown device .*auto, cpu, cuda, cuda:N, mps"):
        check_device(word)


def test_auto_is_the_best_device_that_works_here():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if expected == "cpu" and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        expected = "mps"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a usable CUDA device")
def test_cuda_asked_for_without_a_gpu_build_is_a_sentence():
    with pytest.raises(FommError, match="cannot use a GPU; run on the CPU instead") as caught:
        resolve_device("cuda:0")
    assert caught.value.setting == ("device", "cpu") and "--device" not in str(caught.value)


def test_int8_asked_of_a_gpu_names_the_cpu_as_the_way_out():
    with pytest.raises(FommError, match="int8 runs on the CPU only") as caught:
        choose_precision("cuda", "int8")
    assert caught.value.setting == ("device", "cpu") and "--device" not in str(caught.value)


def test_precision_policy():
    assert check_precision("BF16") == "bf16"
    with pytest.raises(FommError, match="unknown precision 'int4'"):
        check_precision("int4")
    assert choose_precision("cpu", "auto") == "fast"
    assert choose_precision("cpu", "fp16") == "bf16"
    assert choose_precision("cuda", "auto") == "fp16"


# /proc/cpuinfo flags, cut to those the answer depends on but for this project's machine, whose line is whole.
ZEN3_FLAGS = set((
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx "
    "mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid extd_apicid "
    "tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave "
    "avx f16c rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext "
    "cpuid_fault vmmcall fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid rdseed adx smap clflushopt clwb sha_ni "
    "xsaveopt xsavec xgetbv1 xsaves clzero xsaveerptr arat umip vaes vpclmulqdq rdpid fsrm").split())


@pytest.mark.parametrize("flags, kernels", [
    (ZEN3_FLAGS, False),   # 'AMD EPYC' (family 25 model 1, Zen 3): this project's machine, 2026-12-07; torch agreed
    ({"avx2", "fma", "f16c"}, False),   # any AVX2-only x86: Haswell to Alder Lake's, Zen 1-3
    ({"avx2", "avx512f", "avx512cd", "avx512er", "avx512pf"}, False),   # Xeon Phi (Knights Landing): no BW/VL/DQ
    ({"avx2", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}, True),   # Xeon Skylake-SP: emulated
    ({"avx2", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16"}, True),   # EPYC Genoa (Zen 4)
    ({"avx2", "amx_bf16", "amx_tile", "amx_int8"}, True),   # Xeon Sapphire Rapids (its AVX-512 left out here)
    ({"fp", "asimd", "bf16", "i8mm", "sve"}, True),   # Arm Neoverse V1 (AWS Graviton3)
    ({"fp", "asimd", "crc32", "cpuid"}, False),   # Arm Cortex-A72 (Raspberry Pi 4)
])
def test_bf16_kernels_are_judged_by_what_onednn_needs(flags, kernels):
    """The flags oneDNN's bf16 kernels need (torch's own check, `_is_mkldnn_bf16_supported`, asks for them)."""
    from fomm_core.device import cpu_has_bf16_kernels
    assert cpu_has_bf16_kernels(flags) is kernels


def test_bf16_kernels_judged_by_this_cpus_flags_agree_with_torch():
    """Where torch can be asked it is asked; the flags' answer (for a torch without the check) must be the same."""
    from fomm_core.device import cpu_flags, cpu_has_bf16_kernels
    if not cpu_flags():
        pytest.skip("this system has no /proc/cpuinfo flags to judge by")
    assert cpu_has_bf16_kernels(cpu_flags()) is cpu_has_bf16_kernels() is bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
