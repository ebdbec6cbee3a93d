"""Turn run.py's raw results into the Markdown report and the PNG chart;
helpers and tables the benchmark scripts share."""
import importlib.metadata
import json
import math
import statistics
import sys

from measuring import CONTENDED

COLORS = {"uringloop": "#d62728", "asyncio": "#7f7f7f", "uvloop": "#1f77b4", "floor": "#2ca02c"}
# run.py's C io_uring echo server (benchmarks/floor_echo.c): a "loop" of the
# echo cases' results, shown under this name.
FLOOR = "floor"
FLOOR_NAME = "C io_uring floor"
# A run is flagged when the generator was this busy while the server was not
# saturated: its requests/s may measure the generator rather than the loop.
GENERATOR_BUSY = 0.85
SERVER_SATURATED = 0.95
# Rows whose rounds spread wider than this get a word of caution.
WIDE = 0.15


def spread(values):
    """Half the range over rounds, relative to the median."""
    med = statistics.median(values)
    return (max(values) - min(values)) / 2 / med if med else 0.0


def installed(package):
    """Whether `package` is installed.  Not importlib.util.find_spec: the
    scripts' directory, first on their sys.path, holds benchmarks/gunicorn.py,
    which it would take for the gunicorn package."""
    try:
        importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def progress(text):
    print(text, file=sys.stderr, flush=True)


def plural(n, word):
    return f"{n:,} {word}{'s' * (n != 1)}"


def format_size(n):
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def parse_size(text):
    """Bytes, from what format_size writes or shorter: 64, 4k, 1.5m, 1GiB."""
    text = text.strip().lower().removesuffix("b").removesuffix("i")
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def finish(data, as_json, tables):
    """A script's last word: each failed run to stderr, then its JSON or
    its Markdown tables (tables(data) -> lines) to stdout; the exit status."""
    for part in data["cases"].values():
        for failure in part["failures"]:
            progress(failure)
    print(json.dumps(data) if as_json else "\n".join(tables(data)))
    failed = any(part["failures"] for part in data["cases"].values())
    return 1 if failed or data.get("interrupted") else 0


def stats(rs, key):
    """A summary row's entries for `key` over the runs rs: the median, its
    spread and every run's value (key_all)."""
    values = [r[key] for r in rs]
    return {key: statistics.median(values), f"{key}_spread": spread(values),
            f"{key}_all": values}


def ratio_to(value, key, base):
    """value over the median of `key` in the baseline's runs; None without them."""
    return value / statistics.median(r[key] for r in base) if base else None


def contention_notes(lost, repeated, what, where=""):
    """The notes on what other work took of the runs' windows (lost: each
    run's share) on the CPUs `where` says, and on the runs repeated for it;
    `what` names the numbers it makes less reliable."""
    lines = []
    bad = sum(x >= CONTENDED for x in lost)
    if bad:
        lines.append(f"contention: in {bad} of {len(lost)} runs other work took ≥ "
                     f"{CONTENDED:.0%} of the window (max {max(lost):.0%})"
                     f"{where + ',' if where else ''} even after retries; their {what} are "
                     f"less reliable")
    elif lost:
        lines.append(f"contention: other work took at most {max(lost):.1%} of any window{where}")
    if repeated:
        lines.append(f"{plural(repeated, 'run')} repeated for contention")
    return lines


def section_head(title, script, data):
    """The start of a script's section of the report: its heading, then
    the error if the script failed (the whole section then) or a word if
    it was interrupted."""
    lines = [f"### {title} (benchmarks/{script})", ""]
    if "error" in data:
        return lines + ["**failed**:", "", "```", data["error"], "```", ""]
    if data.get("interrupted"):
        lines += [f"**{script} was interrupted: only the runs it completed are shown.**", ""]
    return lines


def median_cell(s, key, digits):
    """'median ±spread' of a summary row's key."""
    return f"{s[key]:,.{digits}f} ±{s[key + '_spread']:.0%}"


def fewer_rounds(runs, rounds):
    """What a row with fewer runs than rounds says after its name."""
    return f" ({runs} of {rounds} rounds)" if runs < rounds else ""


def notes_and_failures(part):
    """The lines under a part's table: its notes, then its failed runs."""
    return [""] + [f"- {note}" for note in part["notes"]] + failure_lines(part["failures"])


def saw(script, data):
    """A script's section's last words: what it ran on, how long it took."""
    return [f"{script} saw: {data['environment']}; {data['seconds']:.0f} s in all.", ""]


def failure_lines(failures):
    """A part's failed runs: a Markdown list item holding a code block."""
    if not failures:
        return []
    lines = ["- **failed** runs:", "", "  ```"]
    for failure in failures:
        lines += ["  " + x for x in failure.splitlines()]
    return lines + ["  ```"]


def summarize(entry):
    ok = [r for r in entry["runs"] if r["ok"]]
    out = {"runs": len(entry["runs"]), "ok": len(ok)}
    if ok:
        for key in ("rps", "cpu_us", "p50_us", "p99_us", "server_busy", "loadgen_busy"):
            out[key] = statistics.median(r[key] for r in ok)
        out["rps_spread"] = spread([r["rps"] for r in ok])
        out["cpu_spread"] = spread([r["cpu_us"] for r in ok])
        out["rss_mib"] = max(r["rss_mib"] for r in ok)
        out["rps_all"] = [r["rps"] for r in ok]
        out["cpu_all"] = [r["cpu_us"] for r in ok]
    return out


def number(v):
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def ratio(v):
    return f"{v:.2f}x"


def ratio_text(value):
    """A ratio, or "-" where there was nothing to compare with."""
    return "-" if value is None else ratio(value)


def geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values))


def network_rows(data):
    """[(case, {loop: summary})] in run order."""
    rows = {}
    for entry in data["cases"]:
        rows.setdefault(entry["case"], {})[entry["loop"]] = summarize(entry)
    return list(rows.items())


def markdown(data):
    settings, env = data["settings"], data["environment"]
    loops, base = settings["loops"], settings["baseline"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    out = [
        f"## Event loops side by side ({data['started']})",
        "",
        f"Linux {env['kernel']}, {env['cpu']} ({env['cpus']} CPUs); {versions}; "
        f"uringloop at {env['commit']}.  Server pinned to CPU {settings['server_cpu']}, "
        f"C load generator to CPU {settings['client_cpu']}; each case ran "
        f"{settings['rounds']} times per loop for {settings['duration']:g} s "
        f"(after {settings['warmup']:g} s of warm-up), the loops alternating.  "
        f"Took {data['seconds'] / 60:.1f} min.",
        "",
    ]
    if data.get("interrupted"):
        out += ["**Interrupted: only the runs completed before the interruption are shown.**",
                ""]
    rows = network_rows(data)
    if rows:
        out += network_table(rows, loops, base)
        out += [
            "",
            "Medians over the rounds; ± is half the range (max − min) over the rounds, "
            "relative to the median.  Server CPU µs/request: the server process's user + "
            "system CPU time (getrusage, all threads) over the measured window, per request "
            "completed.  Busy: each side's CPU time over the window's wall time; the server "
            "near 100% means it set the pace, the generator near 100% with the server below "
            "means the generator may have (see the notes).  p50/p99: latency of each request as seen by the "
            "generator, medians over rounds.  Peak RSS: ru_maxrss, largest over rounds.  "
            "Ratios are of medians: above 1 is better for requests/s, below 1 is better for "
            "CPU/request.",
            "",
        ]
        out += floor_text(data, rows, loops)
        if settings.get("tls"):
            out += [
                f"TLS rows (echo tls: the protocol echo behind create_server(ssl=); http "
                f"aiohttp-https: the aiohttp server with an ssl_context): {settings['tls']}.  "
                f"Every connection's handshake happens before the warm-up, outside the "
                f"measured window; each request is then encrypted and decrypted once each "
                f"way, and the generator checks the decrypted echo byte for byte.",
                "",
            ]
        workloads = {entry["workload"] for entry in data["cases"]}
        if "udp" in workloads:
            out += [
                "echo udp rows: a create_datagram_endpoint protocol sendto()s each datagram "
                "back; \"sockets\" are the generator's UDP sockets, each its own source address "
                "with one datagram in flight, its echo checked byte for byte.  A request is a "
                "datagram echoed: server CPU per request is per datagram.",
                "",
            ]
        if "reader" in workloads:
            out += [
                "echo reader rows: the server drives its sockets through loop.add_reader "
                "alone, its callbacks accepting, recv()ing and sendall()ing with plain socket "
                "calls; each request is one readable event.",
                "",
            ]
        out += summary_table(rows, loops, base)
    internals = data.get("internals")
    if internals:
        out += internals_table(internals, loops, base)
    sendfile = data.get("sendfile")
    if sendfile:
        out += sendfile_tables(sendfile, loops)
    out += notes(data)
    return "\n".join(out) + "\n"


def has_floor(rows):
    return any(FLOOR in by_loop for _, by_loop in rows)


def network_table(rows, loops, base):
    """The main table: a row per case and loop, then the floor's where it ran."""
    floor = has_floor(rows)
    lines = [
        "| case | loop | requests/s | server CPU µs/request | p50 µs | p99 µs "
        f"| peak RSS MiB | busy: server / generator | req/s vs {base} | CPU/request vs {base} |"
        + (" CPU/request vs floor |" if floor else ""),
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|" + ("--:|" if floor else ""),
    ]
    for case, by_loop in rows:
        for loop in loops + [FLOOR] * (FLOOR in by_loop):
            lines.append(network_row(case, loop, by_loop, base, floor))
    return lines


def network_row(case, loop, by_loop, base, floor):
    s, name = by_loop[loop], FLOOR_NAME if loop == FLOOR else loop
    if not s["ok"]:
        status = f"**failed** ({s['runs']}/{s['runs']} runs)" if s["runs"] else "not run"
        return f"| {case} | {name} | {status} |" + " |" * (7 + floor)
    b = by_loop[base]
    failed = f" ({s['runs'] - s['ok']} of {s['runs']} runs failed)" \
        if s["ok"] < s["runs"] else ""
    if loop == base or not b["ok"]:
        rps_ratio = cpu_ratio = "—"
    else:
        rps_ratio = ratio(s["rps"] / b["rps"])
        cpu_ratio = ratio(s["cpu_us"] / b["cpu_us"])
    line = (f"| {case} | {name}{failed} | {s['rps']:,.0f} ±{s['rps_spread']:.0%} "
            f"| {number(s['cpu_us'])} ±{s['cpu_spread']:.0%} | {number(s['p50_us'])} "
            f"| {number(s['p99_us'])} | {s['rss_mib']:.1f} "
            f"| {s['server_busy']:.0%} / {s['loadgen_busy']:.0%} "
            f"| {rps_ratio} | {cpu_ratio} |")
    if floor:
        f = by_loop.get(FLOOR)
        line += f" {ratio(s['cpu_us'] / f['cpu_us'])} |" \
            if loop != FLOOR and f and f["ok"] else " — |"
    return line


def floor_text(data, rows, loops):
    """What the floor is, and each loop's geometric mean over the echo cases
    relative to it."""
    if not has_floor(rows):
        return []
    setups = sorted({r["ring"] for e in data["cases"] if e["loop"] == FLOOR
                     for r in e["runs"] if r["ok"] and "ring" in r})
    lines = [
        f"{FLOOR_NAME} rows: benchmarks/floor_echo.c, a single-threaded C echo server on "
        f"io_uring (ring setup: {', '.join(setups) or '?'}): a multishot ACCEPT, a multishot "
        "RECV per connection picking buffers from a provided-buffer ring, a SEND per "
        "received chunk straight from its buffer, and one io_uring_enter per iteration that "
        "submits and waits: what any loop on this kernel could at best cost per request.  "
        "CPU/request vs floor is each loop's cost relative to it (1.00x: nothing on top).",
        ""]
    cases = [b for _, b in rows if FLOOR in b and b[FLOOR]["ok"]]
    means = [f"{loop} {ratio(geomean([b[loop]['cpu_us'] / b[FLOOR]['cpu_us'] for b in cases]))}"
             for loop in loops if cases and all(b[loop]["ok"] for b in cases)]
    if means:
        lines += [f"CPU/request vs floor, geometric mean over the {plural(len(cases), 'echo case')}: "
                  + ", ".join(means) + ".", ""]
    return lines


def summary_table(rows, loops, base):
    lines = [f"Geometric mean over the cases every loop completed, relative to {base}:", "",
             "| loop | requests/s | CPU/request |", "|---|--:|--:|"]
    complete = [by_loop for _, by_loop in rows if all(by_loop[k]["ok"] for k in loops)]
    if not complete or len(loops) < 2:
        return []
    for loop in loops:
        rps = geomean([b[loop]["rps"] / b[base]["rps"] for b in complete])
        cpu = geomean([b[loop]["cpu_us"] / b[base]["cpu_us"] for b in complete])
        lines.append(f"| {loop} | {ratio(rps)} | {ratio(cpu)} |")
    skipped = len(rows) - len(complete)
    if skipped:
        lines += ["", f"({skipped} case(s) left out: a loop failed them.)"]
    return lines + [""]


def internals_table(internals, loops, base):
    if "error" in internals:
        return ["### Loop internals", "", "**failed**:", "", "```", internals["error"], "```", ""]
    per = {}
    for item in internals["cases"]:
        per.setdefault(item["case"], {})[item["loop"]] = item["seconds_per_op"]
    others = [k for k in loops if k != base]
    lines = ["### Loop internals (benchmarks/loop_internals.py)", "",
             "CPU time per operation (process CPU time), median over rounds ± half the range.",
             "",
             "| case | " + " | ".join(loops) + " | "
             + " | ".join(f"{k} vs {base}" for k in others) + " |",
             "|---|" + "--:|" * (len(loops) + len(others))]
    for case, by_loop in per.items():
        med = {k: statistics.median(v) for k, v in by_loop.items()}
        cells = [f"{med[k] * 1e9:,.0f} ns ±{spread(by_loop[k]):.0%}" for k in loops]
        ratios = [ratio(med[k] / med[base]) for k in others]
        lines.append(f"| {case} | " + " | ".join(cells + ratios) + " |")
    nops = internals.get("uringloop_nop_round_trip")
    if nops:
        lines += ["", f"uringloop NOP round trip (prep, enter, reap, dispatch): "
                      f"{statistics.median(nops) * 1e9:,.0f} ns CPU."]
    return lines + [""]


# sendfile.py's parts as run.py runs them: (part, heading, columns), each
# column (summary key, header, decimals, header of its ratio column).
SENDFILE_PARTS = [
    ("loops", "loop.sendfile()",
     [("mib_s", "MiB/s", 0, "MiB/s"), ("cpu_ms_per_mib", "CPU ms/MiB", 3, "CPU/MiB")]),
    ("http", "aiohttp web.FileResponse",
     [("ms_per_download", "ms per download", 1, "time"),
      ("server_cpu_ms", "server CPU ms per download", 2, "CPU/download")]),
]


def sendfile_tables(sendfile, loops):
    """benchmarks/sendfile.py --json (parts loops and http): a table each."""
    lines = section_head("Sending a file", "sendfile.py", sendfile)
    if "error" in sendfile:
        return lines
    settings, base = sendfile["settings"], sendfile["baseline"]
    for name, heading, columns in SENDFILE_PARTS:
        part = sendfile["parts"].get(name)
        if part is None:
            continue
        lines += [f"#### {part['title']}", ""]
        if name == "loops":
            lines += [
                "The loop sends the file with loop.sendfile() on a plain TCP transport "
                "(create_connection) to a C reader in another process, which checks every byte "
                "and acknowledges the last.  MiB/s: wall time from the first sendfile to that "
                "acknowledgement.  CPU: the sending process's getrusage (all its threads: the "
                "default executor's and io_uring's io-wq workers included) over the same window.  "
                "path: native = the loop's own sendfile; loop fallback = asyncio's generic "
                "_sendfile_fallback (16 KiB executor reads); app fallback = the loop raised "
                "NotImplementedError (uvloop) and the benchmark did what that fallback does.",
                ""]
        else:
            lines += [
                "The aiohttp server (on the loop) serves the file; a C client in another process "
                "downloads it over a new connection each time and checks every body byte.  ms per "
                "download: the client's wall time; server CPU: the server process's getrusage "
                "(all threads) over the downloads, per download.",
                ""]
        header = ["loop", "path"] + [h for _, h, _, _ in columns] \
            + [f"{r} vs {base}" for *_, r in columns]
        lines += ["| " + " | ".join(header) + " |",
                  "|---|---|" + "--:|" * (2 * len(columns))]
        by_loop = {s["loop"]: s for s in part["summary"]}
        for loop in loops:
            s = by_loop.get(loop)
            if s is None or not s["runs"]:
                status = "**failed**" if s is not None else "not run"
                lines.append(f"| {loop} | {status} |" + " |" * (2 * len(columns)))
                continue
            cells = [median_cell(s, key, digits) for key, _, digits, _ in columns]
            ratios = ["—" if loop == base or s[f"{key}_vs_{base}"] is None
                      else ratio(s[f"{key}_vs_{base}"]) for key, *_ in columns]
            runs = fewer_rounds(s["runs"], settings["rounds"])
            lines.append(f"| {loop}{runs} | {s['path']} | " + " | ".join(cells + ratios) + " |")
        lines += notes_and_failures(part)
        lines.append("")
    lines += [
        f"Medians over {settings['rounds']} round(s), ± half the range; ratios are of medians "
        f"(vs {base}: uvloop has no loop.sendfile()).  sendfile.py saw: "
        f"{sendfile['environment']}.",
        ""]
    return lines


def gunicorn_markdown(data):
    """benchmarks/gunicorn.py's JSON as a report section: a list of lines
    (the script's own table, and benchmarks/run.py's workload gunicorn)."""
    lines = section_head("aiohttp under gunicorn", "gunicorn.py", data)
    if "error" in data:
        return lines
    settings, base, part = data["settings"], data["baseline"], data["cases"]["hello"]
    lines += [
        f"gunicorn serving an aiohttp hello world (GET /, keep-alive) with "
        f"{plural(settings['workers'], 'worker')} of each class, master and workers pinned to "
        f"CPU {','.join(map(str, settings['server_cpus']))}, the C load generator to CPU "
        f"{settings['client_cpu']}; {settings['connections']} connections, one request in "
        f"flight each; {plural(settings['rounds'], 'round')} of {settings['duration']:g} s "
        f"after {settings['warmup']:g} s of warm-up, the worker classes alternating.  CPU: "
        f"gunicorn's master and workers, user + system (/proc/<pid>/stat), over the "
        f"generator's window, per request.  Workers' split: each worker's share of the "
        f"workers' CPU, largest first (they share one listening socket).  Busy: that CPU time "
        f"(and the generator's own) over the window's wall time, per CPU: gunicorn well under "
        f"100% means something else set the pace (the generator, or other work on the "
        f"machine).  Medians over the rounds, ± half the range; ratios are of medians, vs "
        f"{base}: above 1 is better for requests/s, below 1 for CPU/request.", "",
        "| loop | worker class | requests/s | CPU µs/request | workers' CPU split "
        f"| busy: gunicorn / generator | req/s vs {base} | CPU/request vs {base} |",
        "|---|---|--:|--:|--:|--:|--:|--:|"]
    for s in part["summary"]:
        loop = s["loop"]
        if not s["runs"]:
            failed = any(f.startswith(f"{loop}:") for f in part["failures"])
            lines.append(f"| {loop} | {s['worker_class']} | "
                         f"{'**failed**' if failed else 'not run'} |" + " |" * 5)
            continue
        short = fewer_rounds(s["runs"], settings["rounds"])
        ratios = ["—" if loop == base or s[f"{key}_vs"] is None else ratio(s[f"{key}_vs"])
                  for key in ("rps", "cpu_us")]
        lines.append(
            f"| {loop}{short} | {s['worker_class']} | {median_cell(s, 'rps', 0)} "
            f"| {number(s['cpu_us'])} ±{s['cpu_us_spread']:.0%} "
            f"| {' / '.join(f'{share:.0%}' for share in s['split'])} "
            f"| {s['server_busy']:.0%} / {s['loadgen_busy']:.0%} | {ratios[0]} | {ratios[1]} |")
    return lines + notes_and_failures(part) + [""] + saw("gunicorn.py", data)


def notes(data):
    lines = []
    for entry in data["cases"]:
        by_error = {}
        for run in entry["runs"]:
            if not run["ok"]:
                by_error.setdefault(run["error"], []).append(str(run["round"]))
        for error, rounds in by_error.items():
            lines.append(f"- **{entry['case']} on {entry['loop']} failed** "
                         f"(round{'s' * (len(rounds) > 1)} {', '.join(rounds)}):\n\n  ```\n"
                         + "\n".join("  " + x for x in error.splitlines())
                         + "\n  ```")
    capped, disturbed = [], []
    for entry in data["cases"]:
        for run in entry["runs"]:
            if not run["ok"]:
                continue
            where = f"{entry['case']} on {entry['loop']} (round {run['round']})"
            if run["loadgen_busy"] >= GENERATOR_BUSY and run["server_busy"] < SERVER_SATURATED:
                capped.append(f"{where}: generator {run['loadgen_busy']:.0%} busy, "
                              f"server {run['server_busy']:.0%}")
            worst = max(run["server_wait"], run["loadgen_wait"], run["steal"])
            if worst >= CONTENDED:
                disturbed.append((worst, f"{where}: server waited {run['server_wait']:.0%}, "
                                         f"generator {run['loadgen_wait']:.0%}, "
                                         f"steal {run['steal']:.0%}"))
    repeated = [(entry, run) for entry in data["cases"] for run in entry["runs"]
                if run.get("repeated")]
    if repeated:
        lines.append(
            f"- {len(repeated)} run(s) were repeated because other work took ≥ "
            f"{CONTENDED:.0%} of the window from the server or the generator (up to "
            f"{data['settings']['retries']} repeat(s); the least disturbed attempt counts, "
            f"flagged below if it was disturbed too): "
            + ", ".join(f"{e['case']} on {e['loop']} (round {r['round']})"
                        for e, r in repeated[:8])
            + (", ..." if len(repeated) > 8 else ""))
    lossy = [(entry, run) for entry in data["cases"] for run in entry["runs"]
             if run["ok"] and run.get("lost")]
    if lossy:
        lines.append(
            f"- {len(lossy)} run(s) lost datagrams: no echo within the generator's 200 ms, "
            f"so it counted the datagram lost and that socket sent the next after the pause; "
            f"their requests/s understate the loop: "
            + "; ".join(f"{e['case']} on {e['loop']} (round {r['round']}): {r['lost']:,} lost"
                        for e, r in lossy[:8])
            + ("; ..." if len(lossy) > 8 else ""))
    if capped:
        lines.append(f"- {len(capped)} run(s) where the load generator, not the server, may "
                     f"have set the pace (their requests/s understate the loop): "
                     + "; ".join(capped[:8]) + ("; ..." if len(capped) > 8 else ""))
    if disturbed:
        disturbed.sort(reverse=True)
        lines.append(
            f"- {len(disturbed)} run(s) lost CPU to other work: the server or the generator "
            f"spent ≥ {CONTENDED:.0%} of the window runnable but waiting for its CPU "
            f"(kernel schedstat run delay), or the hypervisor stole that much; their "
            f"numbers are less reliable.  Worst: "
            + "; ".join(where for _, where in disturbed[:5])
            + ("; ..." if len(disturbed) > 5 else ""))
    wide = [entry for entry in data["cases"] if len([r for r in entry["runs"] if r["ok"]]) > 1
            and max(summarize(entry)["rps_spread"], summarize(entry)["cpu_spread"]) > WIDE]
    if wide:
        lines.append(
            f"- {len(wide)} of {len(data['cases'])} rows vary by more than ±{WIDE:.0%} between "
            f"rounds.  Where no run delay or steal explains it, the machine's speed itself "
            f"changed between runs (other virtual machines on the host, frequency); a "
            f"difference between loops smaller than their spreads is not a finding.  More "
            f"--rounds narrow the medians.")
    if not lines:
        return []
    return ["### Notes", ""] + lines + [""]


def chart(data, path):
    """The PNG chart; False (nothing written) when there is nothing to draw."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import StrMethodFormatter

    rows = network_rows(data)
    loops = data["settings"]["loops"] + [FLOOR] * has_floor(rows)
    internals = data.get("internals") or {}
    per_internal = {}
    for item in internals.get("cases", []):
        per_internal.setdefault(item["case"], {})[item["loop"]] = item["seconds_per_op"]

    # Both sendfile parts as sender CPU per MiB sent, so they share a panel.
    sendfile = data.get("sendfile") or {}
    per_sendfile = {}
    for name, heading, _ in SENDFILE_PARTS:
        part = sendfile.get("parts", {}).get(name)
        if not part:
            continue
        if name == "loops":
            label = f"{heading}, {sendfile['settings']['size'] / (1 << 20):g} MiB"
            per_sendfile[label] = {s["loop"]: s.get("cpu_ms_per_mib_all", [])
                                   for s in part["summary"]}
        else:
            mib = sendfile["settings"]["http_size"] / (1 << 20)
            label = f"{heading}, {mib:g} MiB"
            per_sendfile[label] = {s["loop"]: [v / mib for v in s.get("server_cpu_ms_all", [])]
                                   for s in part["summary"]}

    panels = []
    if rows:
        panels.append(("requests/s (higher is better)", [c for c, _ in rows],
                       lambda i, k: rows[i][1].get(k, {}).get("rps_all", []), 1))
        panels.append(("server CPU µs per request (lower is better)", [c for c, _ in rows],
                       lambda i, k: rows[i][1].get(k, {}).get("cpu_all", []), 1))
    if per_internal:
        names = list(per_internal)
        panels.append(("loop internals: CPU ns per operation (lower is better)", names,
                       lambda i, k: per_internal[names[i]].get(k, []), 1e9))

    if per_sendfile:
        names_sf = list(per_sendfile)
        panels.append(("sending a file: sender CPU µs per MiB (lower is better)", names_sf,
                       lambda i, k: per_sendfile[names_sf[i]].get(k, []), 1e3))

    if not panels:
        return False
    height = sum(max(2.0, 0.28 * len(labels) * len(loops) + 1.0) for _, labels, _, _ in panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, height + 0.4), squeeze=False,
                             layout="constrained")
    bar = 0.8 / len(loops)
    for ax, (title, labels, values, scale) in zip(axes[:, 0], panels):
        for j, loop in enumerate(loops):
            ys, meds, lo, hi = [], [], [], []
            for i in range(len(labels)):
                v = [x * scale for x in values(i, loop)]
                if not v:
                    continue
                m = statistics.median(v)
                ys.append(i + (j - (len(loops) - 1) / 2) * bar)
                meds.append(m)
                lo.append(m - min(v))
                hi.append(max(v) - m)
            ax.barh(ys, meds, height=bar, xerr=[lo, hi], color=COLORS.get(loop),
                    label=FLOOR_NAME if loop == FLOOR else loop,
                    error_kw={"elinewidth": 0.8, "capsize": 2})
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        ax.legend(fontsize=8, loc="best")
    env = data["environment"]
    fig.suptitle(f"uringloop vs asyncio vs uvloop, {data['started']} — Linux {env['kernel']}, "
                 f"median of {data['settings']['rounds']} rounds, bars span min–max",
                 fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
