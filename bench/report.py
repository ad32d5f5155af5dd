#!/usr/bin/env python3
"""Turns the raw results of bench/compare into markdown tables and an SVG bar chart.

Usage: report.py RAW_DIR MARKDOWN_OUT SVG_OUT

RAW_DIR holds (P a peer, S a scenario, R a round):
  meta.txt            one key=value a line for the header; peers=a,b,... (display order);
                      label.<peer>=... what each peer is
  notes.txt           general notes, one a line
  sS.P.rR.json        `jam bench --json` output (scenarios 1-4 and 6)
  sS.P.rR.cpu         server_ticks, machine_busy_ticks (1/100 s, all CPUs), busy_before (%)
  sS.P.rR.note        trouble with that run
  s5.P.txt            key=value: rss_before_kib, rss_after_kib, accepted, open, failed
  s7.P.N.txt          key=value: rss_before_kib, rss_after_kib, open, answered, failed, seconds
  lg.sS.P.rR.txt      output of bench/peers/loadgen (scenarios 1 and 2)
Standard library only.
"""

import html
import json
import sys
from pathlib import Path

TITLES = {
    1: "closed loop, 50 connections, pipeline 1",
    2: "closed loop, 50 connections, pipeline 16",
    3: "new connection per request, 20 workers",
    4: "open loop at {rate} req/s, 50 connections",
    5: "memory of {idle} idle connections",
    6: "{many} concurrent connections, one request each",
    7: "memory after a burst: connections that each ask once and stay",
}
LG_BOUND = 0.9  # load-generator CPU share at which a row is probably client-bound
NOISY = 0.15  # CPU used by other processes (share of one core) that makes a run suspect
TICK_S = 0.01


def kv(path: Path) -> dict:
    out = {}
    if path.exists():
        for word in path.read_text().split():
            if "=" in word:
                k, v = word.split("=", 1)
                out[k] = v
    return out


class Run:
    """One timed jam bench run and the CPU accounting around it."""

    def __init__(self, raw: Path, stem: str):
        self.note = ""
        p = raw / f"{stem}.note"
        if p.exists():
            self.note = p.read_text().strip().replace("\n", "; ").replace("|", "/")
        self.r = None
        p = raw / f"{stem}.json"
        if p.exists() and p.stat().st_size:
            try:
                self.r = json.loads(p.read_text().strip().splitlines()[-1])
            except (ValueError, IndexError):
                self.note = (self.note + "; " if self.note else "") + "unreadable output"
        cpu = kv(raw / f"{stem}.cpu")
        self.server_s = int(cpu["server_ticks"]) * TICK_S if "server_ticks" in cpu else None
        self.busy_s = int(cpu["machine_busy_ticks"]) * TICK_S if "machine_busy_ticks" in cpu else None
        self.time_wait = int(cpu["time_wait"]) if "time_wait" in cpu else None

    @property
    def elapsed(self) -> float:
        return max(self.r["elapsed_s"], 1e-9)

    @property
    def server_share(self):
        return None if self.server_s is None else self.server_s / self.elapsed

    @property
    def other_share(self):
        """CPU used by everything but the server and the load generator, per second of run."""
        if self.server_s is None or self.busy_s is None:
            return None
        return max(0.0, self.busy_s - self.server_s - self.r["client_cpu_s"]) / self.elapsed

    @property
    def us_per_response(self):
        if self.server_s is None or not self.r["ok"]:
            return None
        return self.server_s * 1e6 / self.r["ok"]


def runs_of(raw: Path, s: int, peer: str) -> list:
    stems = sorted(p.name[: -len(".json")] for p in raw.glob(f"s{s}.{peer}.r*.json"))
    stems += sorted(
        p.name[: -len(".note")]
        for p in raw.glob(f"s{s}.{peer}.r*.note")
        if not (raw / (p.name[: -len(".note")] + ".json")).exists()
    )
    return [Run(raw, stem) for stem in stems]


def best(runs: list, s: int):
    good = [r for r in runs if r.r is not None]
    if not good:
        return None
    if s == 4:  # fixed offered rate: the run least disturbed by other processes
        return min(good, key=lambda r: (r.other_share if r.other_share is not None else 9, -r.r["ok"]))
    return max(good, key=lambda r: r.r["rps"])


def fmt_int(x) -> str:
    return f"{x:,.0f}"


def fmt_ms(x) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def pct(x) -> str:
    return "–" if x is None else f"{x:.0%}"


def fmt_errors(r: dict) -> str:
    n = r.get("error_count", 0)
    if not n:
        return "0"
    kinds = ", ".join(f"{v} {k}" for k, v in sorted(r.get("errors", {}).items()))
    return f"{n:,} ({kinds})"


def main() -> None:
    raw, md_out, svg_out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    meta_lines = (raw / "meta.txt").read_text().splitlines()
    meta = dict(line.split("=", 1) for line in meta_lines if "=" in line)
    peers = [p for p in meta.get("peers", "").split(",") if p]
    titles = {
        s: t.format(rate=meta.get("rate", "?"), idle=meta.get("idle", "?"), many=meta.get("many", "?"))
        for s, t in TITLES.items()
    }
    labels = {k[len("label."):]: v for k, v in meta.items() if k.startswith("label.")}
    rounds = meta.get("rounds", "1")

    md = ["# jam: side-by-side benchmark\n"]
    md.append(
        f"Server pinned to core 0, load generator to core 1 (taskset); machine: {meta.get('nproc')} "
        f"cores ({meta.get('cpu', '?')}), {meta.get('date')}, Linux {meta.get('kernel')}. "
        f"jam at commit {meta.get('commit', '?')}. Scheduling: "
        + ("SCHED_FIFO priority 1 for server and load generator (chrt -f 1).\n"
           if meta.get("sched") == "fifo" else "normal (CFS/EEVDF), as a user would run it.\n")
    )
    md.append(
        f"Load generator: `jam bench --threads 1` for every peer, {meta.get('duration')} s per run. "
        f"All peers run at once (idle ones cost nothing); scenarios 1–4 ran in {rounds} round(s), "
        f"interleaved over the peers, and each row shows the best round (1–3: most requests/s; "
        f"4: least disturbed). Load average at start: {meta.get('loadavg', '?')}; CPU in use by "
        f"others just before: {meta.get('busy', '?')} of the machine.\n"
    )
    md.append("Peers:\n")
    for p in peers:
        md.append(f"- **{p}**: {labels.get(p, '')}")
    md.append("")
    md.append(
        "Columns: \"× ceiling\" is requests/s relative to the C epoll ceiling server. CPU columns "
        "are shares of one core during the run: \"LG\" the load generator (at ≥ "
        f"{LG_BOUND:.0%}, marked ⚠, the row measures the load generator more than the server), "
        "\"server\" the server process (all its threads), \"others\" every other process on the "
        f"machine (at ≥ {NOISY:.0%}, marked †, other work competed with the run). \"all rounds\" "
        "is the range over rounds. \"TIME_WAIT at start\" counts the machine's TCP sockets in "
        "TIME_WAIT when the run began (left by earlier connection-heavy runs): jam bench binds "
        "each connection to a source address before connecting, and the kernel's search for a "
        "free port then slows down with their number, so scenarios 3 and 6 can be load-generator-"
        "bound for that reason (jam bench waits for the server to close first, so TIME_WAIT stays with the server's port).\n"
    )

    chart = {}
    for s in (1, 2, 3, 4):
        md.append(f"## {s}. {titles[s]}\n")
        cols = ["peer", "req/s", "× ceiling", "p50 ms", "p99 ms", "p99.9 ms", "errors",
                "LG CPU", "server CPU", "others CPU"]
        align = ["---", "---:", "---:", "---:", "---:", "---:", "---", "---:", "---:", "---:"]
        if s == 4:
            cols += ["server µs/response", "µs/response, all rounds"]
            align += ["---:", "---:"]
        elif s == 3:
            cols += ["req/s, all rounds", "TIME_WAIT at start"]
            align += ["---:", "---:"]
        else:
            cols += ["req/s, all rounds"]
            align += ["---:"]
        md.append("| " + " | ".join(cols) + " |")
        md.append("|" + "|".join(align) + "|")
        ceiling = best(runs_of(raw, s, "ceiling"), s)
        base = ceiling.r["rps"] if ceiling and ceiling.r["rps"] else None
        chart[s] = []
        for p in peers:
            runs = runs_of(raw, s, p)
            b = best(runs, s)
            notes = "; ".join(sorted({r.note for r in runs if r.note}))
            if b is None:
                md.append(f"| {p} | " + " | ".join(["–"] * 5) + f" | {notes or 'no result'} | "
                          + " | ".join(["–"] * (len(cols) - 7)) + " |")
                continue
            r, lat = b.r, b.r["latency_ms"]
            lg = r.get("client_cpu_share", 0.0)
            other = b.other_share
            cells = [
                p,
                fmt_int(r["rps"]),
                f"{r['rps'] / base:.2f}" if base else "–",
                fmt_ms(lat["p50"]),
                fmt_ms(lat["p99"]),
                fmt_ms(lat["p999"]),
                fmt_errors(r) + (f"; {b.note}" if b.note else ""),
                pct(lg) + (" ⚠" if lg >= LG_BOUND else ""),
                pct(b.server_share),
                pct(other) + (" †" if other is not None and other >= NOISY else ""),
            ]
            good = [x for x in runs if x.r is not None]
            if s == 4:
                us = b.us_per_response
                cells.append("–" if us is None else f"{us:.1f}")
                all_us = [x.us_per_response for x in good if x.us_per_response is not None]
                cells.append(f"{min(all_us):.1f}–{max(all_us):.1f}" if len(all_us) > 1 else "–")
            else:
                rps = [x.r["rps"] for x in good]
                cells.append(f"{fmt_int(min(rps))}–{fmt_int(max(rps))}" if len(rps) > 1 else "–")
                if s == 3:
                    cells.append("–" if b.time_wait is None else fmt_int(b.time_wait))
            md.append("| " + " | ".join(cells) + " |")
            chart[s].append((p, r["rps"]))
        md.append("")

    md.append(f"## 5. {titles[5]}\n")
    md.append(
        "RSS is the server process's resident memory (VmRSS) before and after the connections "
        "were opened and accepted, on a fresh server; the kernel's own per-socket memory is not "
        "in it.\n"
    )
    md.append("| peer | connections held | RSS before (MiB) | RSS after (MiB) | KiB per connection | note |")
    md.append("|---|---:|---:|---:|---:|---|")
    for p in peers:
        d = kv(raw / f"s5.{p}.txt")
        note_path = raw / f"s5.{p}.note"
        n = note_path.read_text().strip() if note_path.exists() else ""
        if "rss_after_kib" not in d:
            md.append(f"| {p} | – | – | – | – | {n or 'no result'} |")
            continue
        before, after = int(d["rss_before_kib"]), int(d["rss_after_kib"])
        held = int(d.get("accepted", d.get("open", "0")))
        per = (after - before) / held if held else float("nan")
        extra = f"{d.get('open', '?')} opened, {d.get('failed', '0')} failed"
        md.append(
            f"| {p} | {held:,} | {before / 1024:.1f} | {after / 1024:.1f} | {per:.1f} | "
            f"{extra}{'; ' + n if n else ''} |"
        )
    md.append("")

    md.append(f"## 6. {titles[6]}\n")
    md.append(
        "`jam bench -c N -n N -P 1`: N connections opened at once from 16 loopback addresses, "
        "one request each; \"seconds\" includes connecting.\n"
    )
    md.append("| peer | ok | errors | seconds | p50 ms | p99 ms | max ms | LG CPU | TIME_WAIT at start | note |")
    md.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for p in peers:
        runs = runs_of(raw, 6, p)
        b = best(runs, 6)
        notes = "; ".join(sorted({r.note for r in runs if r.note}))
        if b is None:
            md.append(f"| {p} | – | – | – | – | – | – | – | – | {notes or 'no result'} |")
            continue
        r, lat = b.r, b.r["latency_ms"]
        md.append(
            f"| {p} | {fmt_int(r['ok'])} | {fmt_errors(r)} | {r['elapsed_s']:.1f} | "
            f"{fmt_ms(lat['p50'])} | {fmt_ms(lat['p99'])} | {fmt_ms(lat['max'])} | "
            f"{pct(r.get('client_cpu_share'))} | "
            f"{'–' if b.time_wait is None else fmt_int(b.time_wait)} | {notes} |"
        )
    md.append("")

    burst = sorted(raw.glob("s7.*.txt"))
    if burst:
        md.append(f"## 7. {titles[7]}\n")
        md.append(
            "On a fresh server, `bench/peers/burst_conns.py` opens N connections as fast as it can "
            "(up to 4096 connects in flight, from 8 loopback addresses); each sends one request "
            "as soon as it connects, reads the reply and stays open. RSS is measured before and "
            "one second after the last reply; memory freed during the burst stays with the "
            "process, so this is what a burst costs for good.\n"
        )
        md.append("| peer | N | answered | burst s | RSS before (MiB) | RSS after (MiB) | KiB per connection |")
        md.append("|---|---:|---:|---:|---:|---:|---:|")
        for p in peers:
            for f in sorted(raw.glob(f"s7.{p}.*.txt"), key=lambda f: int(f.name.split(".")[2])):
                d = kv(f)
                n = int(f.name.split(".")[2])
                if "rss_after_kib" not in d:
                    md.append(f"| {p} | {n:,} | – | – | – | – | – |")
                    continue
                before, after = int(d["rss_before_kib"]), int(d["rss_after_kib"])
                md.append(
                    f"| {p} | {n:,} | {int(d.get('answered', 0)):,} | {d.get('seconds', '?')} | "
                    f"{before / 1024:.1f} | {after / 1024:.1f} | {(after - before) / n:.2f} |"
                )
        md.append("")

    ratio_rows = []
    rounds_n = int(meta.get("rounds", "0") or 0)
    for s, what in ((1, "req/s, c=50 P=1"), (2, "req/s, c=50 P=16"), (4, "server µs/response at the fixed rate")):
        for p in peers:
            if p == "ceiling":
                continue
            per_round = []
            for rnd in range(1, rounds_n + 1):
                a, c = Run(raw, f"s{s}.{p}.r{rnd}"), Run(raw, f"s{s}.ceiling.r{rnd}")
                if a.r is None or c.r is None:
                    continue
                if s == 4:
                    if a.us_per_response and c.us_per_response:
                        per_round.append(a.us_per_response / c.us_per_response)
                elif c.r["rps"]:
                    per_round.append(a.r["rps"] / c.r["rps"])
            if per_round:
                per_round.sort()
                mid = len(per_round) // 2
                median = per_round[mid] if len(per_round) % 2 else (per_round[mid - 1] + per_round[mid]) / 2
                ratio_rows.append(
                    f"| {p} | {what} | {median:.2f} | {len(per_round)} | "
                    f"{', '.join(f'{x:.2f}' for x in per_round)} |"
                )
    if ratio_rows:
        md.append("## Ratios to the C ceiling, median of the per-round ratios\n")
        md.append(
            "Each round measures every peer and the ceiling within a minute of each other; the "
            "ratio of the two in the same round cancels most of the machine's drift, and the "
            "median over rounds the rest. Throughput: higher is better; µs/response: lower is "
            "better.\n"
        )
        md.append("| peer | measure | × ceiling (median) | rounds | per round |")
        md.append("|---|---|---:|---:|---|")
        md.extend(ratio_rows)
        md.append("")

    lg_rows = []
    for s, load in ((1, "c=50 P=1"), (2, "c=50 P=16")):
        for p in peers:
            lgs = [kv(f) for f in sorted(raw.glob(f"lg.s{s}.{p}.r*.txt"))]
            lgs = [x for x in lgs if "rps" in x]
            if not lgs:
                continue
            lg = max(lgs, key=lambda x: float(x["rps"]))
            b = best(runs_of(raw, s, p), s)
            jam_rps = b.r["rps"] if b else None
            lg_rps = float(lg["rps"])
            ratio = f"{jam_rps / lg_rps:.2f}" if jam_rps and lg_rps else "–"
            lg_rows.append(
                f"| {p} | {load} | {fmt_int(jam_rps) if jam_rps else '–'} | "
                f"{pct(b.r['client_cpu_share']) if b else '–'} | {fmt_int(lg_rps)} | "
                f"{float(lg.get('cpu_share', '0')):.0%} | {ratio} | {lg.get('errors', '?')} |"
            )
    if lg_rows:
        md.append("## jam bench vs independent C load generator\n")
        md.append(
            "Same server, same connections and pipeline depth, same core, best round of each. "
            "`bench/peers/loadgen` (C, epoll, one thread) counts reply lines without checking "
            "or timing them; jam bench checks every reply and records its latency.\n"
        )
        md.append("| server | load | jam bench req/s | jam bench CPU | loadgen req/s | loadgen CPU | jam / loadgen | loadgen errors |")
        md.append("|---|---|---:|---:|---:|---:|---:|---:|")
        md.extend(lg_rows)
        md.append("")

    notes = raw / "notes.txt"
    if notes.exists() and notes.read_text().strip():
        md.append("## Notes\n")
        for line in notes.read_text().strip().splitlines():
            md.append(f"- {line}")
        md.append("")

    md_out.write_text("\n".join(md))
    svg_out.write_text(svg(chart, titles, peers, meta))


def svg(chart: dict, titles: dict, peers: list, meta: dict) -> str:
    """Horizontal grouped bars: one group per scenario, each with its own scale."""
    colours = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1"]
    colour = {p: colours[i % len(colours)] for i, p in enumerate(peers)}
    width, left, right = 900, 120, 240
    bar_h, gap, group_gap, title_h = 18, 4, 26, 22
    plot_w = width - left - right
    y = 60
    parts = []
    for s in sorted(chart):
        rows = chart[s]
        if not rows:
            continue
        top = max(v for _, v in rows) or 1.0
        ceiling = dict(rows).get("ceiling")
        parts.append(
            f'<text x="10" y="{y + 14}" font-weight="bold">{s}. {html.escape(titles[s])}</text>'
        )
        y += title_h
        for p, v in rows:
            w = max(1.0, plot_w * v / top)
            label = f"{v:,.0f} req/s"
            if ceiling:
                label += f"  ({v / ceiling:.2f}× ceiling)"
            parts.append(
                f'<text x="{left - 8}" y="{y + bar_h - 5}" text-anchor="end">{html.escape(p)}</text>'
                f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour[p]}"/>'
                f'<text x="{left + w + 6:.1f}" y="{y + bar_h - 5}">{html.escape(label)}</text>'
            )
            y += bar_h + gap
        y += group_gap
    height = y + 10
    head = (
        f'<text x="10" y="22" font-size="16" font-weight="bold">jam: requests/s by peer '
        f"(higher is better; each group has its own scale)</text>"
        f'<text x="10" y="42" fill="#555">server on core 0, jam bench on core 1; '
        f"{html.escape(meta.get('nproc', '?'))} cores, {html.escape(meta.get('date', ''))}, "
        f"{html.escape(meta.get('duration', '?'))} s per run, best of "
        f"{html.escape(meta.get('rounds', '1'))} round(s)</text>"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">'
        f'<rect width="100%" height="100%" fill="white"/>{head}{"".join(parts)}</svg>\n'
    )


if __name__ == "__main__":
    main()
