"""The disk-classification experiment: its data, the agreement of the two implementations, its CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from experiment import Config, build_model, make_dataset
from experiment.__main__ import main
from experiment.data import CENTRE, RADIUS
from experiment.metrics import finite_or_none, relative_difference
from experiment.model import torch_twin
from experiment.train import epoch_orders, run_framework, run_torch, should_restart


@pytest.fixture(autouse=True)
def one_thread():
    # The experiment's own setting: these networks are too small for intra-op threads.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return make_dataset(seed=3)


# -- data ------------------------------------------------------------------------------------
def test_dataset_has_1000_training_and_1000_test_points_in_the_unit_square(data):
    assert data.train_points.shape == (1000, 2) and data.test_points.shape == (1000, 2)
    assert data.train_y.shape == (1000,) and data.test_y.shape == (1000,)
    both = torch.cat([data.train_points, data.test_points])
    assert bool((both >= 0).all()) and bool((both <= 1).all())


def test_label_is_one_exactly_for_points_inside_the_disk(data):
    for points, labels in ((data.train_points, data.train_y), (data.test_points, data.test_y)):
        inside = ((points[:, 0] - CENTRE[0]) ** 2 + (points[:, 1] - CENTRE[1]) ** 2).sqrt() < RADIUS
        assert torch.equal(labels, inside.long())


def test_disk_covers_half_the_square_so_classes_are_balanced(data):
    assert math.pi * RADIUS**2 == pytest.approx(0.5)
    # 2000 Bernoulli(1/2) labels: the fraction's std is 0.011; 4 stds.
    fraction = float(torch.cat([data.train_y, data.test_y]).double().mean())
    assert abs(fraction - 0.5) < 0.045


def test_standardisation_uses_the_training_statistics_only(data):
    mean, std = data.train_points.mean(0), data.train_points.std(0)
    assert torch.allclose(data.train_x.mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(data.train_x.std(0), torch.ones(2, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(data.test_x, (data.test_points - mean) / std, rtol=0, atol=1e-12)
    test_mean, test_std = data.test_points.mean(0), data.test_points.std(0)
    assert not torch.allclose(data.test_x, (data.test_points - test_mean) / test_std, rtol=0, atol=1e-6)


def test_same_seed_gives_the_same_data_and_another_seed_other_data():
    a, b, c = make_dataset(seed=7), make_dataset(seed=7), make_dataset(seed=8)
    assert torch.equal(a.train_points, b.train_points) and torch.equal(a.test_points, b.test_points)
    assert not torch.equal(a.train_points, c.train_points)


def test_float32_data_has_the_float64_labels():
    a, b = make_dataset(seed=5), make_dataset(seed=5, dtype=torch.float32)
    assert b.train_x.dtype == torch.float32
    assert torch.equal(a.train_y, b.train_y) and torch.equal(a.test_y, b.test_y)


# -- agreement of the two implementations --------------------------------------------------------
def _train_both(config: Config, seed: int = 0):
    data = make_dataset(seed, config.n_train, config.n_test)
    orders = epoch_orders(seed, config.epochs, config.n_train)
    ours = run_framework(config, seed, data.train_x, data.train_y, orders)
    theirs = run_torch(config, seed, data.train_x, data.train_y, orders)
    return ours, theirs


SHORT = {"epochs": 3, "n_train": 200, "n_test": 50, "runs": 1}


@pytest.mark.parametrize(
    "options",
    [{}, {"momentum": 0.9}, {"loss": "cross-entropy"}, {"activation": "tanh", "weight_decay": 1e-3}],
    ids=["sgd-mse", "momentum", "cross-entropy", "tanh-weight-decay"],
)
def test_framework_and_torch_losses_agree_to_1e9_relative_in_float64(options):
    ours, theirs = _train_both(Config(**SHORT, **options))
    assert len(ours.loss) == len(theirs.loss) == 3
    for epoch, (a, b) in enumerate(zip(ours.loss, theirs.loss)):
        assert abs(a - b) <= 1e-9 * abs(b), f"epoch {epoch}: framework {a!r}, torch {b!r}"


def test_batchnorm_blocks_agree_with_torch_batchnorm1d_in_float64():
    # PyChrot's blocks (Linear, activation, BatchNorm1d); lr 0.5 diverges with them, 0.05 does not.
    config = Config(**SHORT, batchnorm=True, hidden=[20, 20, 20, 20, 20], lr=0.05)
    ours, theirs = _train_both(config)
    assert all(math.isfinite(v) for v in ours.loss)
    assert max(abs(a - b) / abs(b) for a, b in zip(ours.loss, theirs.loss)) <= 1e-9
    buffers = dict(theirs.model.named_buffers())
    for name, value in ours.model.named_buffers():
        if value.is_floating_point():
            assert torch.allclose(value, buffers[name], rtol=1e-9, atol=1e-12), name


def test_dropout_network_and_its_twin_compute_the_same_function_in_eval_mode():
    config = Config(dropout=0.3, batchnorm=True)
    model = build_model(config, seed=0)
    twin = torch_twin(model)
    x = make_dataset(0, 64, 1).train_x
    model.eval()
    twin.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), twin(x), rtol=1e-12, atol=1e-12)


def test_framework_and_torch_end_with_the_same_weights():
    ours, theirs = _train_both(Config(**SHORT, momentum=0.5))
    twin = dict(theirs.model.named_parameters())
    for name, value, _ in ours.model.named_param():
        assert torch.allclose(value, twin[name].detach(), rtol=1e-9, atol=1e-12), name


def test_restart_reinitialises_both_implementations_at_the_same_epoch():
    # A threshold of 0.99 asks for a 99% drop in two epochs, which no run achieves: both restart.
    config = Config(epochs=6, n_train=100, n_test=20, runs=1, restart=2, restart_threshold=0.99, max_restarts=1)
    ours, theirs = _train_both(config)
    assert ours.restarts == theirs.restarts == [2]
    assert len(ours.loss) == 6
    assert max(abs(a - b) / abs(b) for a, b in zip(ours.loss, theirs.loss)) <= 1e-9


@pytest.mark.parametrize(
    ("losses", "since", "restarts", "expected"),
    [
        ([0.25, 0.25, 0.25], 0, 0, True),  # stuck for K = 3 epochs
        ([0.25, 0.2, 0.1], 0, 0, False),  # learning
        ([0.25, 0.25], 0, 0, False),  # fewer than K epochs since initialisation
        ([0.1, 0.1, 0.1, 0.25, 0.25, 0.25], 3, 0, True),  # stuck again after a restart at epoch 3
        ([0.25, 0.25, 0.25], 0, 2, False),  # no restarts left
    ],
)
def test_should_restart_only_when_the_loss_has_not_dropped_for_k_epochs(losses, since, restarts, expected):
    config = Config(epochs=12, restart=3, max_restarts=2)
    assert should_restart(config, losses, since, restarts) is expected


def test_no_restart_in_the_second_half_of_training():
    config = Config(epochs=8, restart=3)
    assert should_restart(config, [0.1, 0.1, 0.1, 0.1, 0.25, 0.25, 0.25], since=4, restarts=0) is False


@pytest.mark.parametrize(
    "bad",
    [
        {"dropout": 1.0},
        {"restart": 1},
        {"activation": "nope"},
        {"hidden": []},
        {"batchnorm": True, "n_train": 101, "batch_size": 50},
    ],
)
def test_invalid_configuration_is_refused(bad):
    with pytest.raises(ValueError, match="Config: expected"):
        Config(**bad)


# -- command line ------------------------------------------------------------------------------
TINY = ["--runs", "2", "--epochs", "2", "--n-train", "100", "--n-test", "40", "--quiet"]
METRICS = {"train_error", "test_error", "precision", "recall", "f1", "seconds_per_epoch"}


def test_cli_writes_training_json_with_the_schema_keys(tmp_path, capsys):
    path = tmp_path / "results" / "training.json"
    assert main([*TINY, "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["kind"] == "training"
    assert {"date", "commit", "python", "torch", "platform", "cpu", "threads", "device"} <= set(result["environment"])
    assert {"activation", "loss", "lr", "batch_size", "epochs", "runs", "dtype"} <= set(result["config"])
    assert [run["seed"] for run in result["runs"]] == [0, 1]
    for run in result["runs"]:
        for impl in ("framework", "torch"):
            assert {"loss", *METRICS} <= set(run[impl]) and len(run[impl]["loss"]) == 2
    for impl in ("framework", "torch"):
        assert set(result["summary"][impl]) == METRICS
        assert set(result["summary"][impl]["test_error"]) == {"mean", "std"}
    assert {"epochs_compared", "max_relative_difference_first_epochs", "max_relative_difference_all_epochs"} <= set(
        result["agreement"]
    )
    assert result["agreement"]["max_relative_difference_all_epochs"] <= 1e-9
    assert result["agreement"]["max_relative_difference_final_weights"] <= 1e-9
    grid = result["decision_grid"]
    for impl in ("framework", "torch"):
        assert len(grid[impl]) == len(grid["ys"]) and all(len(row) == len(grid["xs"]) for row in grid[impl])
        assert all(0 <= p <= 1 for row in grid[impl] for p in row)
    assert len(result["test_points"]["points"]) == len(result["test_points"]["labels"]) == 40
    assert "test error (%)" in capsys.readouterr().out


def test_cli_without_torch_trains_the_framework_only(tmp_path):
    path = tmp_path / "training.json"
    assert main([*TINY, "--no-torch", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert "torch" not in result["runs"][0] and "torch" not in result["summary"]
    assert result["agreement"]["comparable"] is False
    assert set(result["summary"]["framework"]) == METRICS


def test_cli_restores_the_callers_thread_count(one_thread):
    torch.set_num_threads(2)
    assert main([*TINY, "--threads", "1"]) == 0
    assert torch.get_num_threads() == 2


def test_cli_with_dropout_trains_both_and_does_not_compare_their_losses(tmp_path):
    path = tmp_path / "training.json"
    assert main([*TINY, "--dropout", "0.2", "--json", str(path)]) == 0
    record = json.loads(path.read_text())["agreement"]
    assert record["comparable"] is False and "max_relative_difference_all_epochs" not in record


def test_relative_difference_treats_equal_divergence_as_agreement_and_one_sided_as_infinite():
    assert relative_difference(2.0, 1.0) == 0.5
    assert relative_difference(math.nan, math.nan) == 0.0
    assert relative_difference(math.nan, 1.0) == math.inf


def test_non_finite_values_become_null_for_strict_json():
    cleaned = finite_or_none({"loss": [0.1, math.nan, math.inf], "ok": True})
    assert json.loads(json.dumps(cleaned, allow_nan=False)) == {"loss": [0.1, None, None], "ok": True}


def test_cli_rejects_an_invalid_option_with_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--dropout", "1.5", "--quiet"])
    assert exit_info.value.code == 2
    assert "dropout" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(capsys):
    assert main([*TINY, "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("extra", [[], ["--dropout", "0.2", "--batchnorm"]], ids=["mlp", "dropout-batchnorm"])
def test_cli_trains_framework_and_torch_side_by_side_on_cuda(tmp_path, extra):
    path = tmp_path / "training.json"
    assert main([*TINY, "--device", "cuda", *extra, "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["environment"]["device"] == "cuda" and result["config"]["device"] == "cuda"
    for run in result["runs"]:
        assert all(math.isfinite(v) for impl in ("framework", "torch") for v in run[impl]["loss"])
    if not extra:
        assert result["agreement"]["max_relative_difference_all_epochs"] <= 1e-9


def test_a_single_run_reports_its_mean_and_no_spread() -> None:
    from experiment.metrics import mean_std

    assert mean_std([0.25]) == {"mean": 0.25, "std": None}
    assert mean_std([1.0, 3.0]) == {"mean": 2.0, "std": pytest.approx(2**0.5)}
