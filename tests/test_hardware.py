"""The setup table reads this machine, and the CPU facts come from where the kernel puts them."""

import platform

import torch
import torchvision

from book.hardware import cpu_model, setup


def test_setup_reports_this_process_s_torch_and_its_threads():
    facts = setup()
    assert facts["torch"] == torch.__version__ and facts["torchvision"] == torchvision.__version__
    assert facts["torch threads"] == str(torch.get_num_threads())
    assert facts["Python"] == platform.python_version()
    assert int(facts["cores available"]) >= 1
    assert facts["GPU"].startswith("none") != torch.cuda.is_available()


def test_the_cpu_model_is_a_name_not_empty():
    assert cpu_model().strip()
