"""bench.load's reading of the server's histograms: quantiles of what a
histogram counted between two scrapes, interpolated within buckets as
Prometheus's histogram_quantile does."""

from __future__ import annotations

from bench.load import _quantiles, _server_side


def _histogram(name: str, counts: dict, **labels: str) -> dict:
    out = {}
    for le, value in counts.items():
        out[(name + "_bucket", tuple(sorted({**labels, "le": le}.items())))] = value
    out[(name + "_count", tuple(sorted(labels.items())))] = counts["+Inf"]
    return out


def test_quantiles_of_the_samples_between_two_scrapes() -> None:
    name = "grpc_server_handling_seconds"
    before = _histogram(name, {"0.01": 50.0, "0.1": 50.0, "1.0": 50.0, "+Inf": 50.0},
                        grpc_method="GetOneReg")
    # 100 more: 50 under 10 ms, 49 in (10, 100] ms, 1 in (100 ms, 1 s]
    after = _histogram(name, {"0.01": 100.0, "0.1": 149.0, "1.0": 150.0, "+Inf": 150.0},
                       grpc_method="GetOneReg")
    # another method's samples are not counted
    after.update(_histogram(name, {"0.01": 0.0, "0.1": 0.0, "1.0": 500.0, "+Inf": 500.0},
                            grpc_method="Run"))
    p50, p99, n = _quantiles(before, after, name, {"grpc_method": "GetOneReg"})
    assert n == 100
    assert abs(p50 - 10.0) < 1e-9  # the 50th of 100 is the last under 10 ms
    assert abs(p99 - 100.0) < 1e-9  # the 99th: the top of the (10, 100] bucket
    assert _quantiles(after, after, name, {"grpc_method": "GetOneReg"}) is None


def test_the_server_side_lines_name_what_the_server_measured() -> None:
    lag = _histogram("rvkvm_event_loop_lag_seconds",
                     {"0.001": 8.0, "0.01": 10.0, "+Inf": 10.0})
    lines = _server_side({}, lag)
    assert len(lines) == 1 and "loop lag" in lines[0] and "(10 samples)" in lines[0]
    assert _server_side({}, {}) == []
