"""Markdown tables, targets and PNG plots from a bench run's results."""
import os
import re

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def _f(v, fmt="{:,.0f}"):
    return "—" if v is None else fmt.format(v)


def _x(v):
    return "—" if v is None else f"{v:.2f}x"


def targets(data):
    """(target, measured, goal, met) rows for the speed targets, for
    the loop aioloop.new_event_loop() gives here."""
    from bench.loops import default_aioloop
    AIO = data.get("default_aioloop") or default_aioloop(data["loops"])
    rows = []
    base = data["baseline"]
    echo = data.get("echo", {})

    def echo_ratio(key):
        loops = echo.get(key, {}).get("loops", {})
        return loops.get(AIO, {}).get("ratio_rps")

    for key, goal in (("protocol 1KiB x50", 1.2), ("protocol 16KiB x50", 1.5),
                      ("protocol 100KiB x50", 1.5)):
        if key in echo:
            r = echo_ratio(key)
            rows.append((f"echo {key.split()[1]}, 50 conns, req/s vs {base}", _x(r), f">= {goal}x",
                         r is not None and r >= goal))
    ah = data.get("aiohttp", {}).get("loops", {})
    if AIO in ah:
        r = ah[AIO].get("ratio_rps")
        rows.append((f"aiohttp hello req/s vs {base}", _x(r), ">= 1.15x", r is not None and r >= 1.15))
    ov = data.get("overhead", {})
    for w in ("call_soon chain", "call_soon batch", "call_later timers", "sleep(0)",
              "call_soon_threadsafe"):
        if w in ov:
            r = ov[w]["loops"][AIO]["ratio"]
            rows.append((f"{w} vs {base}", _x(r), ">= 1.5x", r >= 1.5))
    key = "protocol 1KiB x50"
    if key in echo and "cpu_us" in echo[key]["loops"].get("c-epoll", {}) \
            and "cpu_us" in echo[key]["loops"].get(AIO, {}):
        mine = echo[key]["loops"][AIO]["cpu_us"]
        ceil = echo[key]["loops"]["c-epoll"]["cpu_us"]
        rows.append(("server CPU per echo request (1 KiB, 50 conns) vs the C epoll server",
                     f"{mine / ceil:.2f}x ({mine:.1f} vs {ceil:.1f} µs)", "<= 1.25x", mine / ceil <= 1.25))
    mem = data.get("memory", {}).get("loops", {})
    if "idle" in mem.get(AIO, {}) and "idle" in mem.get(base, {}):
        a = mem[AIO]["idle"]["bytes_per_conn"]
        b = mem[base]["idle"]["bytes_per_conn"]
        rows.append((f"memory per idle connection vs {base}", f"{a:,.0f} vs {b:,.0f} B",
                     f"<= {base}", a <= b))
    return rows


def _plot(data, img_dir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    os.makedirs(img_dir, exist_ok=True)
    made = []
    echo = data.get("echo", {})
    if echo:
        for metric, label, fname in (("rps", "requests/s (higher is better)", "echo_rps.png"),
                                     ("cpu_us", "server CPU µs per request (lower is better)",
                                      "echo_cpu.png")):
            kinds = sorted({v["kind"] for v in echo.values()},
                           key=["protocol", "buffered", "streams", "sock"].index)
            fig, axes = plt.subplots(len(kinds), 1, figsize=(12, 3.2 * len(kinds)), squeeze=False)
            for ax, kind in zip(axes[:, 0], kinds):
                keys = [k for k, v in echo.items() if v["kind"] == kind]
                names = list(echo[keys[0]]["loops"])
                width = 0.8 / len(names)
                for i, nm in enumerate(names):
                    vals = [echo[k]["loops"].get(nm, {}).get(metric, 0) for k in keys]
                    ax.bar([j + i * width for j in range(len(keys))], vals, width, label=nm)
                ax.set_xticks([j + 0.4 - width / 2 for j in range(len(keys))])
                ax.set_xticklabels([k.split(" ", 1)[1] for k in keys], fontsize=8)
                ax.set_title(f"echo, {kind}: {label}", fontsize=10)
                if metric == "rps":
                    ax.set_yscale("log")
            axes[0, 0].legend(fontsize=8, ncol=len(names))
            fig.tight_layout()
            fig.savefig(os.path.join(img_dir, fname), dpi=80)
            plt.close(fig)
            made.append(fname)
    ov = data.get("overhead", {})
    if ov:
        names = data["loops"]
        fig, ax = plt.subplots(figsize=(11, 3.5))
        width = 0.8 / len(names)
        ws = list(ov)
        for i, nm in enumerate(names):
            ax.bar([j + i * width for j in range(len(ws))], [ov[w]["loops"][nm]["ratio"] for w in ws],
                   width, label=nm)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(ws))])
        ax.set_xticklabels(ws, fontsize=8)
        ax.set_title(f"loop overhead: ops/s relative to {data['baseline']} (higher is better)", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(img_dir, "overhead.png"), dpi=80)
        plt.close(fig)
        made.append("overhead.png")
    ah = {n: s for n, s in data.get("aiohttp", {}).get("loops", {}).items() if "rps" in s}
    if ah:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3))
        names = list(ah)
        a1.bar(names, [ah[n]["rps"] for n in names])
        a1.set_title("aiohttp hello: requests/s", fontsize=10)
        a2.bar(names, [ah[n]["cpu_us"] for n in names])
        a2.set_title("aiohttp hello: server CPU µs/request", fontsize=10)
        for a in (a1, a2):
            a.tick_params(axis="x", labelsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(img_dir, "aiohttp.png"), dpi=80)
        plt.close(fig)
        made.append("aiohttp.png")
    mem = {n: s for n, s in data.get("memory", {}).get("loops", {}).items() if "idle" in s}
    if mem:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.2))
        names = list(mem)
        a1.bar(names, [mem[n]["idle"]["bytes_per_conn"] for n in names])
        a1.set_title(f"RSS per idle connection, bytes ({data['memory']['idle_conns']:,} open)", fontsize=10)
        a1.tick_params(axis="x", labelsize=8)
        for n in names:
            s = mem[n]["short"]["samples"]
            a2.plot([c for c, _ in s], [k / 1024 for _, k in s], marker=".", label=n)
        a2.set_title("server RSS (MiB) over sequential short connections", fontsize=10)
        a2.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(img_dir, "memory.png"), dpi=80)
        plt.close(fig)
        made.append("memory.png")
    return made


def ratio_spread(data):
    """(median, widest, cells): half the width of each cell's per-round
    ratio range to the baseline, relative to its median ratio, over every
    cell of the run that has one; None when no cell has two rounds."""
    halves = []

    def walk(o):
        if isinstance(o, dict):
            r, rng = o.get("ratio_rps"), o.get("ratio_rps_range")
            if r and rng:
                halves.append((rng[1] - rng[0]) / 2 / r)
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(data)
    if not halves:
        return None
    halves.sort()
    return halves[len(halves) // 2], halves[-1], len(halves)


def machine_rows(data):
    """(what, value) rows naming the machine and software of a run."""
    v = data["versions"]
    rows = [("CPU", f"{v.get('cpu', '?')}, {v['cpus']} CPUs ({v.get('machine', '?')})"),
            ("kernel", f"Linux {v['kernel']}"),
            ("Python", v["python"])]
    aio = v.get("aioloop", "?")
    if "aioloop_commit" in v:
        aio += f" (commit {v['aioloop_commit']})"
    if "aioloop_engine" in v:
        aio += f", default engine {v['aioloop_engine']}"
    rows.append(("aioloop", aio))
    rows += [(k, v[k]) for k in ("uvloop", "rloop", "aiofastnet", "aiohttp", "rsloop") if k in v]
    return rows


def _names(results):
    names = []
    for res in results.values():
        for nm in res.get("loops", {}):
            if nm not in names:
                names.append(nm)
    return names


def _rate_tables(w, results, base, what, latency=False):
    """Rate and CPU tables of a workload family ({key: {"loops", "best_peer"}})."""
    names = _names(results)
    head = "| workload | best peer | " + " | ".join(names) + " |"
    rule = "|---|---|" + "---|" * len(names)
    skipped = []

    def cell(res, nm, fn):
        sm = res["loops"].get(nm)
        if sm is None:
            return ""
        if "skipped" in sm:
            skipped.append(f"{nm}: {sm['skipped']}")
            return "skipped"
        return fn(sm)

    def ratios(sm, kind):
        if f"ratio_{kind}" not in sm and f"best_{kind}" not in sm:
            return ""                  # the baseline when it is the best peer; c-epoll
        return f"{_x(sm.get(f'ratio_{kind}'))} / {_x(sm.get(f'best_{kind}'))}"

    w(f"{what}/s; under it the ratio to {base} / to the best peer (the fastest loop "
      "that is not aioloop's in that row; — where the loop is that one or it has no result):")
    w("")
    w(head)
    w(rule)
    for key, res in results.items():
        w(f"| {key} | {res.get('best_peer') or '—'} | " + " | ".join(
            cell(res, nm, lambda sm: f"{sm['rps']:,.0f}"
                 + (f"<br>{ratios(sm, 'rps')}" if ratios(sm, "rps") else ""))
            for nm in names) + " |")
    w("")
    w(f"Server CPU µs per {what.split()[0].rstrip('s').lower()}: all threads = loop thread + "
      "other threads (aioloop-threads' completion threads; any helper thread of another loop); "
      f"under it how many times less CPU than {base} / than the best peer:")
    w("")
    w(head)
    w(rule)
    for key, res in results.items():
        w(f"| {key} | {res.get('best_peer') or '—'} | " + " | ".join(
            cell(res, nm, lambda sm: f"{sm['cpu_us']:.1f} = {sm['loop_cpu_us']:.1f} + "
                 f"{sm.get('other_cpu_us', sm['cpu_us'] - sm['loop_cpu_us']):.1f}"
                 + (f"<br>{ratios(sm, 'cpu')}" if ratios(sm, "cpu") else ""))
            for nm in names) + " |")
    w("")
    if latency:
        w("Latency, p50 / p99 in µs:")
        w("")
        w("| workload | " + " | ".join(names) + " |")
        w("|---|" + "---|" * len(names))
        for key, res in results.items():
            w(f"| {key} | " + " | ".join(
                f"{res['loops'][nm]['p50_us']:,.0f} / {res['loops'][nm]['p99_us']:,.0f}"
                if "p50_us" in res["loops"].get(nm, {}) else "" for nm in names) + " |")
        w("")
    errs = {nm: sum(r["loops"].get(nm, {}).get("errors", 0) for r in results.values())
            for nm in names}
    w("Errors seen by the load generator: " + ", ".join(f"{nm} {e}" for nm, e in errs.items()) + ".")
    if skipped:
        w("Skipped: " + "; ".join(dict.fromkeys(skipped)) + ".")
    w("")


TLS_PEER = "aiofastnet-uvloop"


def _tls_section(w, data, tls, base):
    w("### TLS")
    w("")
    if "skipped" in tls:
        w(f"Skipped: {tls['skipped']}.")
        w("")
        return
    seen = sorted({sm["tls"] for res in tls.values() for sm in res.get("loops", {}).values()
                   if "tls" in sm})
    w("aiohttp's hello app over HTTPS under `wrk -t1 -c50` (keep-alive: the handshakes are "
      "done in the warm-up), TLS echo and short TLS connections (connect, a full handshake, "
      "no resumption, one echo, close_notify, close) under `bench/c/tlsgen.c`; every TLS "
      "workload is followed by its plain-TCP twin of the same size, from the same run. "
      "Server: `create_server(ssl=)` with Python's default server `SSLContext` and a self-signed "
      "ECDSA P-256 certificate"
      + (f"; negotiated: {', '.join(seen)}" if seen else "")
      + ". rloop is not in this part: it has no TLS server. Kernel TLS is not exercised.")
    w("")
    groups = (("HTTPS (aiohttp hello)", "Requests", lambda m: m.get("kind") in ("tls-aiohttp", "aiohttp")),
              ("TLS echo", "Requests", lambda m: m.get("kind") in ("tls-protocol", "tls-buffered",
                                                                   "protocol", "buffered")),
              ("New TLS connections", "Connections", lambda m: m.get("kind") in ("tls-conn", "conn")))
    for title, what, pick in groups:
        sub = {k: v for k, v in tls.items() if pick(v)}
        if sub:
            w(f"#### {title}")
            w("")
            _rate_tables(w, sub, base, what, latency=True)
    keys = [k for k, v in tls.items() if "plain" in v]
    names = _names({k: tls[k] for k in keys})
    if TLS_PEER in names:
        w(f"Every TLS workload, req/s (conn/s) and CPU ratios to {base} / to {TLS_PEER} "
          "(medians of per-round ratios; CPU: higher is less):")
        w("")
        w("| workload | " + " | ".join(n for n in names if n != TLS_PEER) + " |")
        w("|---|" + "---|" * (len(names) - 1))
        for k in keys:
            cells = []
            for nm in names:
                if nm == TLS_PEER:
                    continue
                sm = tls[k]["loops"].get(nm, {})
                vs = sm.get("vs", {}).get(TLS_PEER, {})
                cells.append("" if "rps" not in sm else
                             f"{_x(sm.get('ratio_rps'))} / {_x(vs.get('rps'))}<br>"
                             f"cpu {_x(sm.get('ratio_cpu'))} / {_x(vs.get('cpu'))}")
            w(f"| {k} | " + " | ".join(cells) + " |")
        w("")
    w("What TLS costs: server CPU µs per request (connection) over TLS minus its plain twin's, "
      "and under it the TLS rate as a share of the plain one:")
    w("")
    w("| workload | " + " | ".join(names) + " |")
    w("|---|" + "---|" * len(names))
    for k in keys:
        w(f"| {k} vs {tls[k]['plain']} | " + " | ".join(
            f"{sm['tls_extra_cpu_us']:+.1f} ({sm['cpu_us']:.1f} − {sm['plain_cpu_us']:.1f})"
            f"<br>{sm['tls_rps_share'] * 100:.0f}%" if sm.get("tls_rps_share") is not None else ""
            for sm in (tls[k]["loops"].get(nm, {}) for nm in names)) + " |")
    w("")


def markdown(data, img_dir, img_rel):
    v = data["versions"]
    base = data["baseline"]
    out = []
    w = out.append
    cmd = data.get("command") or f"python -m bench{' --quick' if data['quick'] else ''}"
    w(f"Run of {data['date']}: `{cmd}` "
      f"({data['rounds']} interleaved round(s), {data['seconds']:g} s per network run, "
      f"{data.get('wall_s', 0) / 60:.0f} min in all), on:")
    w("")
    w("| machine | |")
    w("|---|---|")
    for k, val in machine_rows(data):
        w(f"| {k} | {val} |")
    w("")
    w(f"With {v['cpus']} CPUs the load generator and the server share the machine's cores, "
      "so requests/s moves with whatever else runs; **server CPU per request is the steadier figure**. "
      f"Ratios are medians of per-round ratios to {base} and to the best peer (for CPU: their CPU "
      "per request divided by this loop's, so higher is better in both). The `c-epoll` column is "
      "a plain C epoll echo server (bench/c/echo_epoll.c): what a server reaches on this machine, "
      "not a loop one could pick.")
    w("")
    spread = ratio_spread(data)
    if spread is not None:
        med, widest, n = spread
        w(f"**How much the ratios move here**: in this run the per-round ratios to {base} of a "
          f"cell spanned ±{med:.0%} around their median (the median over {n} cells; the widest "
          f"±{widest:.0%}). A difference smaller than that is noise on this machine; quote a ratio "
          "only from at least 7 interleaved rounds (`--rounds 7`, or `python -m bench.ab`), with "
          "its min–max.")
        w("")
    else:
        w(f"**How much the ratios move here**: a one-round run shows no spread; on a shared "
          "machine the same ratio has moved by tens of percent between runs minutes apart. Quote a "
          "ratio only from at least 7 interleaved rounds (`--rounds 7`, or `python -m bench.ab`), "
          "with its min–max.")
        w("")
    rows = targets(data)
    if rows:
        from bench.loops import default_aioloop
        w(f"### Speed targets, default aioloop configuration ({default_aioloop(data['loops'])})")
        w("")
        w("| target | measured | goal | met |")
        w("|---|---|---|---|")
        for t, m, g, ok in rows:
            w(f"| {t} | {m} | {g} | {'yes' if ok else '**no**'} |")
        w("")
    made = _plot(data, img_dir)
    echo = data.get("echo")
    if echo:
        w("### Echo (C load generator, closed loop)")
        w("")
        w("Each connection sends a message and waits for its whole echo before sending the next.")
        w("")
        _rate_tables(w, echo, base, "Requests", latency=True)
        for img in ("echo_rps.png", "echo_cpu.png"):
            if img in made:
                w(f"![{img}]({img_rel}/{img})")
        w("")
    short = data.get("short")
    if short:
        w("### Short connections")
        w("")
        w("Each client connects, sends one message, waits for its echo and closes (with an RST, "
          "so no TIME_WAIT piles up on the client), then connects again; the rate is connections/s "
          "and the CPU is per connection (accept, the echo, the close).")
        w("")
        _rate_tables(w, short, base, "Connections", latency=True)
    udp = data.get("udp")
    if udp:
        w("### UDP echo (`create_datagram_endpoint`)")
        w("")
        w("Client sockets each keep datagrams in flight, a new one sent for every echo back; a datagram "
          "with no echo after 50 ms counts as lost and is sent again.")
        w("")
        _rate_tables(w, udp, base, "Datagrams", latency=True)
        lost = {nm: sum(r["loops"].get(nm, {}).get("lost", 0) for r in udp.values())
                for nm in _names(udp)}
        w("Datagrams lost (all rounds): " + ", ".join(f"{nm} {n}" for nm, n in lost.items()) + ".")
        w("")
    pw = data.get("pywork")
    if pw:
        w("### Python work per request (Protocol echo, 1 KiB, 50 connections)")
        w("")
        cal = data.get("pywork_iters_per_us")
        w("`data_received` first spins a pure-Python loop for K µs, then echoes: how each loop "
          "fares when Python, not I/O, is the bottleneck.  The loop is calibrated once, in the "
          "bench's process"
          + (f" ({cal:g} iterations per µs of CPU time)" if cal else "")
          + ", and every server gets the same number of iterations, so each loop does the same "
          "work; the machine's speed drifts, so K is nominal.  The loop thread's CPU includes it.")
        w("")
        _rate_tables(w, pw, base, "Requests")
    ah = data.get("aiohttp")
    if ah:
        w("### aiohttp hello world (wrk, 1 thread, 50 connections)")
        w("")
        if "skipped" in ah:
            w(f"Skipped: {ah['skipped']}.")
            w("")
        else:
            _rate_tables(w, {"hello x50": ah}, base, "Requests", latency=True)
            if "aiohttp.png" in made:
                w(f"![aiohttp]({img_rel}/aiohttp.png)")
                w("")
    tls = data.get("tls")
    if tls:
        _tls_section(w, data, tls, base)
    ov = data.get("overhead")
    if ov:
        names = data["loops"]
        w("### Loop overhead (in-process, operations/s)")
        w("")
        w("| workload | " + " | ".join(names) + " |")
        w("|---|" + "---|" * len(names))
        for wname, res in ov.items():
            w(f"| {wname} | " + " | ".join(
                f"{res['loops'][nm]['ops_per_s']:,.0f} ({res['loops'][nm]['ratio']:.2f}x)"
                for nm in names) + " |")
        if "overhead.png" in made:
            w("")
            w(f"![overhead]({img_rel}/overhead.png)")
        w("")
    cg = data.get("callgrind")
    if cg:
        w("### Instructions per operation (callgrind)")
        w("")
        if "skipped" in cg:
            w(f"Skipped: {cg['skipped']}.")
        else:
            names = list(next(iter(cg["workloads"].values())))
            w("Counted by valgrind's callgrind: (instructions with 3N operations − with N) / 2N, "
              f"N = {cg['n']:,}. Repeatable to well under 1%, whatever the machine is doing.")
            w("")
            w("| workload | " + " | ".join(names) + " |")
            w("|---|" + "---|" * len(names))
            for wname, row in cg["workloads"].items():
                w(f"| {wname} | " + " | ".join(f"{row[n]:,.0f}" for n in names) + " |")
        w("")
    mem = data.get("memory")
    if mem:
        w(f"### Memory (Protocol echo server, RSS from /proc)")
        w("")
        w(f"| server | bytes per idle connection ({mem['idle_conns']:,} open) | RSS after 10% / 100% of "
          f"{mem['short_total']:,} short connections | growth | conn/s | errors |")
        w("|---|---|---|---|---|---|")
        for nm, s in mem["loops"].items():
            if "skipped" in s:
                w(f"| {nm} | skipped: {s['skipped']} | | | | |")
                continue
            sh = s["short"]
            w(f"| {nm} | {s['idle']['bytes_per_conn']:,.0f} | {sh['first_kib']:,} / {sh['last_kib']:,} KiB "
              f"| {sh['growth_kib']:+,} KiB | {sh['conns_per_s']:,.0f} | {sh['errors']} |")
        if "memory.png" in made:
            w("")
            w(f"![memory]({img_rel}/memory.png)")
        w("")
    return "\n".join(out) + "\n"


def write_docs(data, docs_dir):
    """Replace the generated part of docs/benchmarks.md and its plots."""
    img_dir = os.path.join(docs_dir, "img")
    md = markdown(data, img_dir=img_dir, img_rel="img")
    path = os.path.join(docs_dir, "benchmarks.md")
    with open(path) as f:
        text = f.read()
    block = f"{BEGIN}\n{md}{END}"
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n## Latest run\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)
