"""The kernel counter (python -m benchmarks.kernels): what it counts, and the table it prints."""

import pytest
import torch

from benchmarks import kernels


def meta(*shape):
    return torch.empty(*shape, device="meta")


def test_each_operator_that_computes_counts_once():
    x = meta(8, 8)
    assert kernels.count(lambda: x.add(1).mul(2).sum(), full=1).kernels == 3


def test_views_and_uninitialised_allocations_launch_no_kernel():
    x = meta(8, 8)
    assert kernels.count(lambda: (x.view(-1), x.t(), x[2:], torch.empty_like(x), x.unsqueeze(0)), full=1).kernels == 0


def test_a_full_pass_touches_a_large_tensor_and_a_per_channel_operation_does_not():
    x, scale = meta(64, 64), meta(64)
    counted = kernels.count(lambda: (x * 2, scale + 1, x.new_full((), 0.5)), full=64 * 64 // 4)
    assert (counted.kernels, counted.full_passes) == (3, 1)


def test_relu_is_one_kernel_forward_on_both_sides():
    counted = kernels.count_case("ReLU", "seed")
    assert counted["forward"]["framework"].kernels == counted["forward"]["torch"].kernels == 1


def test_max_pooling_by_kernel_offsets_launches_more_kernels_than_torchs_fused_one():
    counted = kernels.count_case("MaxPool2d", "seed")
    assert counted["forward"]["torch"].kernels == 1
    assert counted["forward"]["framework"].kernels > 4  # at least one pass per offset of a 2x2 window


def test_a_module_that_cannot_move_to_the_meta_device_is_reported_not_counted():
    assert "does not run on the meta device" in kernels.count_case("Dropout", "seed")


def test_the_table_lists_both_passes_of_each_case(capsys):
    assert kernels.main(["--only", "ReLU", "GELU", "--size", "seed"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines if line.startswith(("ReLU", "GELU"))] == [
        ["ReLU", "forward"],
        ["ReLU", "forward+backward"],
        ["GELU", "forward"],
        ["GELU", "forward+backward"],
    ]


def test_an_unknown_case_is_refused_with_the_known_names():
    with pytest.raises(SystemExit):
        kernels.main(["--only", "NoSuchModule"])
    with pytest.raises(ValueError, match="no benchmark case 'NoSuchModule'"):
        kernels.count_case("NoSuchModule")


def test_a_training_step_is_counted_as_one_pass_on_both_sides():
    counted = kernels.count_case("SmallCNN", "seed")
    assert list(counted) == ["train_step"]
    assert counted["train_step"]["framework"].kernels > 0 and counted["train_step"]["torch"].kernels > 0


def test_a_step_without_the_size_asked_for_is_reported_and_the_table_still_prints(capsys):
    assert "has no large size" in kernels.count_case("SeedMLP-b50", "large")
    assert kernels.main(["--only", "SeedMLP-b50", "--size", "large"]) == 0
    assert "SeedMLP-b50  has no large size" in capsys.readouterr().out
