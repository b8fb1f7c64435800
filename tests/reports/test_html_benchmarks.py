"""benchmarks.html: framework against torch per module, workload, size and pass, colour-coded ratios."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from html_fixtures import between, copy_fixtures, fixture_json, inside, render_pages, text, write_json

from reports import formatting
from reports.benchmarks_page import _elements, comparisons, size_axis

DATA = fixture_json("benchmarks-cpu.json")
KEYED = [b for b in DATA["benchmarks"] if b["extra_info"].get("module")]


def row(html: str, module: str, size: str, pass_: str) -> str:
    return between(html, f'<th scope="row">{module}</th><td>{size}</td><td>{pass_}</td>', "</tr>")


def median(module: str, size: str, pass_: str, impl: str) -> float:
    return next(
        b["stats"]["median"]
        for b in KEYED
        if (b["extra_info"]["module"], b["extra_info"]["size"], b["extra_info"]["pass"], b["extra_info"]["impl"])
        == (module, size, pass_, impl)
    )


@pytest.mark.parametrize("module", sorted({b["extra_info"]["module"] for b in KEYED}))
def test_every_module_and_workload_appears(fixture_pages: dict[str, str], module: str) -> None:
    assert f'<th scope="row">{module}</th>' in fixture_pages["benchmarks"]


def test_workloads_have_their_own_table(fixture_pages: dict[str, str]) -> None:
    workloads = fixture_pages["benchmarks"].split("<h3>Workloads</h3>", 1)[1].split("</table>", 1)[0]
    assert '<th scope="row">MLP</th>' in workloads
    assert '<th scope="row">Linear</th>' not in workloads


@pytest.mark.parametrize(
    "key", sorted({(b["extra_info"]["module"], b["extra_info"]["size"], b["extra_info"]["pass"]) for b in KEYED})
)
def test_each_row_shows_both_medians_iqrs_and_their_ratio(fixture_pages: dict[str, str], key: tuple) -> None:
    cells = text(row(fixture_pages["benchmarks"], *key))
    framework, torch = median(*key, "framework"), median(*key, "torch")
    iqrs = [
        b["stats"]["iqr"]
        for b in KEYED
        if (b["extra_info"]["module"], b["extra_info"]["size"], b["extra_info"]["pass"]) == key
    ]
    assert formatting.ratio(framework / torch) in cells
    assert formatting.seconds(framework) in cells
    assert formatting.seconds(torch) in cells
    for iqr in iqrs:
        assert formatting.seconds(iqr) in cells


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (("Linear", "medium", "forward+backward"), "good"),  # framework faster: 0.91x
        (("Linear", "medium", "forward"), "good"),  # within 1.1x
        (("Linear", "large", "forward"), "warn"),  # 1.5x
        (("Linear", "seed", "forward"), "warn"),  # exactly 2x is still amber
        (("ReLU", "medium", "forward"), "bad"),  # 5x
    ],
)
def test_ratios_are_colour_classed(fixture_pages: dict[str, str], key: tuple, expected: str) -> None:
    assert f'<td class="num ratio {expected}">' in row(fixture_pages["benchmarks"], *key)


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(0.3, "good"), (1.0, "good"), (1.1, "good"), (1.1001, "warn"), (2.0, "warn"), (2.0001, "bad"), (None, "na")],
)
def test_ratio_class_thresholds(ratio: float | None, expected: str) -> None:
    assert formatting.ratio_class(ratio) == expected


def test_throughput_is_flops_over_median_and_a_share_of_the_measured_peak(fixture_pages: dict[str, str]) -> None:
    throughput = fixture_pages["benchmarks"].split("<h3>Throughput</h3>", 1)[1]
    cells = text(row(throughput, "Linear", "large", "forward"))
    # 2 * 1000 * 1024 * 1024 flops in 3 ms (framework) and 2 ms (torch), against a 2000 GFLOP/s peak
    assert "699 34.95 % 1,049 52.43 %" in cells


def test_rows_without_flops_have_no_throughput(fixture_pages: dict[str, str]) -> None:
    throughput = fixture_pages["benchmarks"].split("<h3>Throughput</h3>", 1)[1].split("</table>", 1)[0]
    assert '<th scope="row">ReLU</th>' not in throughput


def test_a_timing_plot_per_module_measured_at_several_sizes(fixture_pages: dict[str, str]) -> None:
    plots = inside(fixture_pages["benchmarks"], '<div class="plots">', "</div>")
    assert plots.count("<svg") == 2
    assert 'aria-label="Linear: time per call' in plots
    assert 'aria-label="ReLU: time per call' in plots
    assert "one size only, so in the tables alone: MLP" in fixture_pages["benchmarks"]


def test_sizes_are_placed_by_the_element_count_of_their_shapes() -> None:
    rows, _ = comparisons(DATA, "cpu")
    xs, _, ticks = size_axis([r for r in rows if r.module == "Linear"])
    assert xs == {"seed": 250.0, "medium": 25600.0, "large": 1024000.0}
    assert ticks is None


def test_sizes_without_readable_shapes_are_placed_in_order_by_name() -> None:
    data = copy.deepcopy(DATA)
    for bench in data["benchmarks"]:
        bench["extra_info"]["shapes"] = "n/a"
    rows, _ = comparisons(data, "cpu")
    xs, _, ticks = size_axis([r for r in rows if r.module == "Linear"])
    assert sorted(xs, key=xs.get) == ["seed", "medium", "large"]
    assert list(ticks.values()) == ["seed", "medium", "large"]


def test_benchmarks_without_a_comparison_key_are_counted_not_shown(fixture_pages: dict[str, str]) -> None:
    assert "1 benchmark without a module and implementation" in text(fixture_pages["benchmarks"])
    assert "test_matmul_peak" not in fixture_pages["benchmarks"]


def test_a_comparison_with_one_implementation_has_no_ratio(tmp_path: Path) -> None:
    data = copy.deepcopy(DATA)
    data["benchmarks"] = [b for b in data["benchmarks"] if b["extra_info"].get("impl") != "torch"]
    write_json(tmp_path, "benchmarks-cpu.json", data)
    html = render_pages(tmp_path, "benchmarks")["benchmarks"]
    assert '<td class="num ratio na">—</td>' in row(html, "Linear", "large", "forward")


def test_cpu_and_cuda_get_a_section_each_when_both_files_exist(tmp_path: Path) -> None:
    cuda = copy.deepcopy(DATA)
    for bench in cuda["benchmarks"]:
        bench["extra_info"]["device"] = "cuda"
    cuda["machine_info"]["environment"] |= {"device": "cuda", "cuda": "12.8", "gpu": "Fixture GPU 80GB"}
    copy_fixtures(tmp_path, "benchmarks-cpu.json")
    write_json(tmp_path, "benchmarks-cuda.json", cuda)
    html = render_pages(tmp_path, "benchmarks")["benchmarks"]
    cpu_at, cuda_at = html.index('<section id="cpu">'), html.index('<section id="cuda">')
    assert cpu_at < cuda_at
    assert "Fixture GPU 80GB" in text(html[cuda_at:])
    assert "Fixture GPU 80GB" not in text(html[cpu_at:cuda_at])


def test_users_ops_benchmarked_beside_the_framework_get_their_own_section(tmp_path: Path) -> None:
    ops = copy.deepcopy(DATA)
    ops["benchmarks"] = [b for b in ops["benchmarks"] if b["extra_info"].get("module") == "Linear"]
    for bench in ops["benchmarks"]:
        bench["extra_info"]["module"] = "FusedOp"
    ops["machine_info"]["bench"] = {
        **ops["machine_info"].get("bench", {}),
        "labels": {"framework": "op", "torch": "reference"},
    }
    copy_fixtures(tmp_path, "benchmarks-cpu.json")
    write_json(tmp_path, "benchmarks-ops-cpu.json", ops)
    html = render_pages(tmp_path, "benchmarks")["benchmarks"]
    cpu_at, ops_at = html.index('<section id="cpu">'), html.index('<section id="ops-cpu">')
    assert cpu_at < ops_at
    assert "FusedOp" in text(html[ops_at:]) and "FusedOp" not in text(html[cpu_at:ops_at])


def test_cpu_alone_has_no_cuda_section(fixture_pages: dict[str, str]) -> None:
    assert '<section id="cpu">' in fixture_pages["benchmarks"]
    assert '<section id="cuda">' not in fixture_pages["benchmarks"]


def test_the_producing_environment_is_shown(fixture_pages: dict[str, str]) -> None:
    env = text(between(fixture_pages["benchmarks"], "<h3>Produced on (cpu)</h3>", "</section>"))
    for key in ("date", "commit", "cpu", "python", "torch"):
        assert str(DATA["machine_info"]["environment"][key]) in env


def test_missing_results_say_to_run_make_bench(tmp_path: Path) -> None:
    html = render_pages(tmp_path, "benchmarks")["benchmarks"]
    assert "No benchmark results yet" in text(html)
    assert "<code>make bench</code>" in html


@pytest.mark.parametrize(
    ("shapes", "elements"),
    [
        ("Linear(in_features=2, out_features=25) input (50, 2) [100 elements]", 100),
        ("Conv2d(in_channels=3, out_channels=8, kernel_size=3) input (8, 3, 32, 32)", 24576),
        ("input (10, 25), weight (25, 25)", 250),
        ("(4, 7)", 28),
        ("MLP(batch=50, hidden=25)", None),
    ],
)
def test_the_input_size_is_read_from_the_shapes_text(shapes: str, elements: int | None) -> None:
    assert _elements(shapes) == elements
