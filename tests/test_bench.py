"""The benchmark harness itself (bench/): its summaries pick the best peer
and skip what a loop cannot run, its report renders such results, its C
load generator's short-connection and UDP modes work against aioloop, and
its TLS part (C TLS load generator, HTTPS under wrk) runs end to end.
No timings are asserted: only that work was done and counted."""
import importlib.util
import os
import shutil

import pytest

from bench import __main__ as bench_main
from bench import net, report


def _row(rps, cpu):
    return {"rps": rps, "p50_us": 1.0, "p99_us": 2.0, "cpu_us": cpu, "loop_cpu_us": cpu / 2,
            "other_cpu_us": cpu / 2, "errors": 0}


def test_summarize_best_peer_ratios_and_skips():
    per = {"uvloop": [_row(100, 10), _row(100, 10)],
           "rloop": [_row(200, 5), _row(300, 5)],
           "aioloop-uring": [_row(250, 4), "server did not start"],
           "aiofastnet-uvloop": ["no datagram support", "no datagram support"],
           "c-epoll": [_row(1000, 1), _row(1000, 1)]}
    out, best = bench_main.summarize(per, "uvloop")
    # c-epoll is the ceiling, not a peer; aioloop is never its own peer.
    assert best == "rloop"
    assert out["aiofastnet-uvloop"] == {"skipped": "no datagram support"}
    aio = out["aioloop-uring"]
    assert aio["rounds"] == 1 and aio["rps"] == 250
    # Ratios come only from the rounds where both sides have a result.
    assert aio["ratio_rps"] == pytest.approx(2.5)
    assert aio["best_rps"] == pytest.approx(1.25)
    assert aio["best_cpu"] == pytest.approx(5 / 4)
    assert out["rloop"]["ratio_rps"] == pytest.approx(2.5)
    assert "best_rps" not in out["rloop"]
    assert "ratio_rps" not in out["c-epoll"]


def test_report_renders_machine_peers_and_skipped_cells(tmp_path):
    per = {"uvloop": [_row(100, 10)], "rloop": ["refused"], "aioloop-uring": [_row(150, 8)]}
    loops, best = bench_main.summarize(per, "uvloop")
    data = {"date": "2000-01-01", "quick": True, "rounds": 1, "seconds": 1.0,
            "baseline": "uvloop", "loops": list(per),
            "versions": {"python": "3.x", "kernel": "k", "cpus": 2, "cpu": "Some CPU",
                         "aioloop": "0", "aioloop_engine": "uring", "rloop": "0.5"},
            "udp": {"64B x50": {"size": "64B", "loops": loops, "best_peer": best}}}
    md = report.markdown(data, img_dir=str(tmp_path), img_rel="img")
    assert "| CPU | Some CPU, 2 CPUs" in md
    assert "| rloop | 0.5 |" in md
    assert "| 64B x50 | uvloop | 100 | skipped | 150<br>1.50x / 1.50x |" in md
    assert "rloop: refused" in md


def test_tls_summary_cost_and_report(tmp_path):
    """The TLS part's extras: ratios to aiofastnet-uvloop, what TLS adds to
    the plain twin, and the report's TLS section."""
    def tls_row(rps, cpu):
        return dict(_row(rps, cpu), handshakes=50, stalled=0, tls="TLSv1.3 TLS_AES_256_GCM_SHA384")
    tls_per = {"uvloop": [tls_row(100, 10)], "aiofastnet-uvloop": [tls_row(200, 5)],
               "aioloop-uring": [tls_row(150, 8)]}
    plain_per = {"uvloop": [_row(300, 4)], "aiofastnet-uvloop": [_row(300, 4)],
                 "aioloop-uring": [_row(300, 5)]}
    results = {}
    for key, per, meta in (("tls-protocol 1KiB x50", tls_per, {"kind": "tls-protocol",
                                                              "plain": "protocol 1KiB x50"}),
                           ("protocol 1KiB x50", plain_per, {"kind": "protocol"})):
        loops, best = bench_main.summarize(per, "uvloop", (bench_main.TLS_PEER,))
        results[key] = dict(meta, loops=loops, best_peer=best)
    bench_main.tls_cost(results)
    aio = results["tls-protocol 1KiB x50"]["loops"]["aioloop-uring"]
    assert aio["vs"]["aiofastnet-uvloop"]["rps"] == pytest.approx(0.75)
    assert aio["vs"]["aiofastnet-uvloop"]["cpu"] == pytest.approx(5 / 8)
    assert aio["tls_extra_cpu_us"] == pytest.approx(3.0)
    assert aio["tls_rps_share"] == pytest.approx(0.5)
    assert aio["tls"] == "TLSv1.3 TLS_AES_256_GCM_SHA384"
    data = {"date": "2000-01-01", "quick": True, "rounds": 1, "seconds": 1.0,
            "baseline": "uvloop", "loops": list(tls_per),
            "versions": {"python": "3.x", "kernel": "k", "cpus": 2, "aioloop": "0"},
            "tls": results}
    md = report.markdown(data, img_dir=str(tmp_path), img_rel="img")
    assert "### TLS" in md and "rloop is not in this part" in md
    assert ("| tls-protocol 1KiB x50 | — / 0.50x<br>cpu — / 0.50x | 1.50x / 0.75x<br>cpu 1.25x / 0.62x |"
            in md)
    assert "| tls-protocol 1KiB x50 vs protocol 1KiB x50 | +6.0 (10.0 − 4.0)<br>33% |" in md
    skipped = report.markdown(dict(data, tls={"skipped": "no OpenSSL headers"}),
                              img_dir=str(tmp_path), img_rel="img")
    assert "Skipped: no OpenSSL headers." in skipped


@pytest.mark.skipif(not shutil.which("cc"), reason="the load generator needs a C compiler")
def test_loadgen_short_udp_and_python_work_against_aioloop():
    net.build_tools()
    short = net.short_conns("aioloop", 4, 256, 0.3, warmup=0.1)
    assert short["rps"] > 0 and short["errors"] == 0 and short["cpu_us"] > 0
    udp = net.udp("aioloop", 4, 1, 64, 0.3, warmup=0.1)
    assert udp["rps"] > 0 and udp["errors"] == 0 and "lost" in udp
    work = net.echo("aioloop", "protocol", 1024, 4, 0.3, warmup=0.1, work=200)
    assert work["rps"] > 0 and work["errors"] == 0


def _tls_missing():
    """Why the TLS part cannot run here, or None."""
    if not shutil.which(os.environ.get("CC", "cc")):
        return "the TLS load generator needs a C compiler"
    if not shutil.which("wrk"):
        return "the HTTPS workload needs wrk"
    if importlib.util.find_spec("aiohttp") is None:
        return "the HTTPS workload needs aiohttp"
    return net.build_tls_tools()      # OpenSSL's headers, a certificate


def test_tls_part_runs_on_a_peer_and_aioloop():
    """One round of three of the TLS part's workloads (HTTPS, TLS echo, new
    TLS connections), each with its plain twin, on uvloop (asyncio's
    loop where uvloop is absent) and aioloop: every one did work, none
    counted an error, and the TLS cost is worked out against its twin."""
    why = _tls_missing()
    if why:
        pytest.skip(why)
    net.build_tools()
    peer = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    keys = {"https 13B x50", "tls-protocol 16KiB x50", "tls-conn 1KiB x10"}
    res = bench_main.run_tls([peer, "aioloop"], peer, rounds=1, seconds=1.0, quick=True,
                             warmup=0.2, match=keys)
    assert set(res) == keys | {"http 13B x50", "protocol 16KiB x50", "conn 1KiB x10"}
    for key, r in res.items():
        for name in (peer, "aioloop"):
            sm = r["loops"][name]
            assert "skipped" not in sm, (key, name, sm)
            assert sm["rps"] > 0 and sm["cpu_us"] > 0 and sm["errors"] == 0, (key, name, sm)
            if key.startswith("tls-"):
                assert sm["tls"].startswith("TLSv1.3"), sm["tls"]
                assert sm["tls_extra_cpu_us"] == pytest.approx(sm["cpu_us"] - sm["plain_cpu_us"])


def test_the_report_says_how_much_ratios_move():
    """The report states the run's own spread of per-round ratios (and what
    the c-epoll column is), so a user does not read noise as a result."""
    from bench import report
    data = {"echo": {"1KiB": {"loops": {
        "x": {"ratio_rps": 1.0, "ratio_rps_range": [0.8, 1.2]},
        "y": {"ratio_rps": 2.0, "ratio_rps_range": [1.0, 3.0]},
        "z": {"ratio_rps": 1.0}}}}}
    med, widest, n = report.ratio_spread(data)
    assert n == 2 and widest == 0.5 and med in (0.2, 0.5)
    assert report.ratio_spread({"echo": {}}) is None
