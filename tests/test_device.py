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
