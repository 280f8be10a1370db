"""make bench's average-CPU verdict: lxcwatch over node_exporter round by round, then the median of those ratios
(bench/bench.py), so that a drift of the host's speed between two windows does not decide it."""

import argparse

import pytest

from bench import bench

ARGS = argparse.Namespace(interval=1.0, scrape_interval=15.0)


def results(lx_samples: list[float], lx_scrapes: list[float], ne_scrapes: list[float]):
    lx = bench.Result("lxcwatch", sample_rounds=lx_samples, scrape_rounds=lx_scrapes, rss_warm=50 << 20, rss_end=50 << 20)
    ne = bench.Result("node_exporter", scrape_rounds=ne_scrapes)
    return lx, ne


def ratio_verdict(lx, ne) -> str:
    return next(line for line in bench.verdict(lx, ne, ARGS) if line.startswith("- average CPU"))


def test_each_round_compares_the_two_exporters_of_that_round():
    # Round 1: 15 ms per sample + 7.5 ms per 15 s scrape = 1.55 % of a core, node_exporter 750 ms per 15 s = 5 %.
    lx, ne = results([0.015, 0.030, 0.018], [0.0075, 0.0075, 0.0075], [0.75, 0.75, 1.5])
    assert bench.load_ratios(lx, ne, ARGS) == pytest.approx([1.55 / 5, 3.05 / 5, 1.85 / 10])
    assert bench.median_ratio(lx, ne, ARGS) == pytest.approx(0.31)
    assert "**MISSED**" in ratio_verdict(lx, ne) and "median of the rounds' ratios 0.31" in ratio_verdict(lx, ne)


def test_the_median_round_decides_not_the_medians_of_each_exporter():
    """The median figures of each exporter alone (18 ms, 7.5 ms; 750 ms) would give 1.85 % / 5 % = 0.37, missed;
    the rounds, each within a minute, give 0.29, 0.61 and 0.185: met."""
    lx, ne = results([0.014, 0.030, 0.018], [0.0075, 0.0075, 0.0075], [0.75, 0.75, 1.5])
    assert bench.median_ratio(lx, ne, ARGS) == pytest.approx(0.29)
    assert "**met**" in ratio_verdict(lx, ne), ratio_verdict(lx, ne)


def test_no_round_with_a_node_exporter_figure_is_no_verdict_of_met():
    lx, ne = results([0.01, 0.01, 0.01], [0.001, 0.001, 0.001], [0.0, 0.0, 0.0])
    assert bench.median_ratio(lx, ne, ARGS) is None
    assert "**MISSED**" in ratio_verdict(lx, ne) and "ratios -" in ratio_verdict(lx, ne)
