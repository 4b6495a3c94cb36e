#!/usr/bin/env python3
"""Merges the JSON files bench/run.sh collected into bench/results/<date>.json, writes the
report bench/results/<date>.md and draws PNG plots with gnuplot. Every number in the report
comes from those files; nothing is estimated or typed in (the paper's figures are quoted
as the paper's, next to ours)."""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys


def load(work, name):
    p = os.path.join(work, name + ".json")
    if not os.path.exists(p):
        return None
    try:
        with open(p) as f:
            return json.load(f)
    except json.JSONDecodeError:
        return None


def f(v, d=2):
    if v is None:
        return "-"
    if isinstance(v, (int, float)):
        return f"{v:.{d}f}"
    return str(v)


def case(doc, device, mode, size):
    if not doc:
        return None
    for c in doc.get("cases", []):
        if c.get("device") == device and c.get("mode") == mode and c.get("size") == size:
            return c
    return None


def get(c, *path):
    for p in path:
        if c is None or not isinstance(c, dict) or p not in c:
            return None
        c = c[p]
    return c


def reductions_table(w, value):
    """The paper's two reductions (RX): map on the guest's own queue against copy on the
    shared queue, then reuse against map; value(device, mode, size) gives the cost. Writes
    the table and returns its rows."""
    w("| size | copy (shared) | map (own queue) | reuse | map vs copy | reuse vs map |")
    w("| --- | --- | --- | --- | --- | --- |")
    out = []
    for size in (64, 1514):
        cp, mp, ru = value("ring", "copy", size), value("tap", "map", size), value("tap", "reuse", size)
        r1 = (1 - mp / cp) * 100 if cp and mp else None
        r2 = (1 - ru / mp) * 100 if mp and ru else None
        out.append({"size": size, "copy": cp, "map": mp, "reuse": ru,
                    "map_vs_copy_percent": r1, "reuse_vs_map_percent": r2})
        w(f"| {size} | {f(cp, 0)} | {f(mp, 0)} | {f(ru, 0)} | {f(r1, 0)} % | {f(r2, 0)} % |")
    return out


def gnuplot(script, out_png, data):
    if not shutil.which("gnuplot"):
        return False
    dat = out_png[:-4] + ".dat"
    with open(dat, "w") as fd:
        fd.write(data)
    src = f'set terminal pngcairo size 800,480 noenhanced\nset output "{out_png}"\n' \
          f'datafile = "{dat}"\n' + script
    r = subprocess.run(["gnuplot"], input=src, text=True, capture_output=True)
    os.unlink(dat)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
    return r.returncode == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--date", required=True)
    ap.add_argument("--quick", default="0")
    ap.add_argument("--lab", default="")
    a = ap.parse_args()

    names = sorted(n[:-5] for n in os.listdir(a.work) if n.endswith(".json"))
    runs = {n: load(a.work, n) for n in names}
    merged = {"date": a.date, "quick": a.quick == "1", "runs": runs}
    md = []
    w = md.append
    w(f"# dpnetback benchmark results, {a.date}" + (" (quick run)" if a.quick == "1" else ""))
    w("")
    w("Written by `bench/run.sh` (docs/benchmarks.md explains every figure). Machine: "
      f"{get(runs.get('mechanisms'), 'cpus') or '?'} CPUs shared with other work, DPDK without "
      "hugepages, the simulated hypervisor (dpnb-simhv, a separate process; grant operations "
      "run in the lcore's thread, as on Xen: docs/simulator.md) and simulated guests "
      "(dpnb-netfront processes). TSC cycles are wall-clock cycles of the lcore thread: they "
      "include its system calls and time it is descheduled, so they are upper bounds of the "
      "daemon's own work; ratios between rows of one run are the figures to read.")
    w("")

    mech = runs.get("mechanisms")
    hz = None
    # --- 1 and 2 ---------------------------------------------------------------------------
    w("## 1-2. Driver-domain cost per packet by mechanism, and the ceiling")
    w("")
    w("`dpnb-bench-datapath --modes copy,map,reuse --sizes 64,1514 --phases rx,tx`: one "
      "guest, one lcore. `ring` = net_ring with a generator thread (copy only: net_ring hands "
      "mbufs over); `tap` = net_tap, one port per guest, the kernel side injecting with "
      "AF_PACKET sendmmsg (map and reuse are zero copy: the PMD reads into the guest buffer). "
      "lcore cycles/pkt = lcore TSC cycles outside its sleep stage per packet (an upper "
      "bound: where the lcore is not saturated it includes the polls it spun between "
      "bursts); `x testpmd` = that over testpmd io-forward's cycles/packet on the same vdev "
      "type and frame size, measured in the same run. `corrected` subtracts the empty polls "
      "at a calibrated cost per poll; the calibration (0.5 s without traffic) now measures "
      "polls that follow a wake-up, dearer than the warm polls between bursts, so it "
      "overshoots: read it as a lower bound.")
    w("")
    w("| device | mode | size | dir | Mpps | offered Mpps | lcore cycles/pkt | corrected | "
      "x testpmd | grant hypercalls/pkt | notifications/pkt | drops (no buffer) |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    for c in (mech or {}).get("cases", []):
        for d in ("rx", "tx"):
            m = c.get(d)
            if not m:
                continue
            if "error" in m and "mpps" not in m:
                w(f"| {c['device']} | {c['mode']} | {c['size']} | {d} | error: {m['error']} |||||||| ")
                continue
            hz = hz or m.get("tsc_hz")
            off = m.get("offered_mpps", m.get("generator_mpps"))
            vdev = "net_ring" if c["device"] == "ring" else "net_tap"
            tp = next((t.get("cycles_per_packet") for t in (mech or {}).get("testpmd", [])
                       if t.get("vdev") == vdev and t.get("size") == c["size"]), None)
            raw = m.get("lcore_cycles_per_packet")
            xt = raw / tp if raw and tp else None
            m["x_testpmd_raw"] = xt
            w(f"| {c['device']} | {c['mode']} | {c['size']} | {d} | {f(m.get('mpps'), 3)} | "
              f"{f(off, 3)} | {f(raw, 0)} | "
              f"{f(m.get('cycles_per_packet'), 0)} | {f(xt, 1)} | "
              f"{f(m.get('grant_hypercalls_per_packet'), 3)} | "
              f"{f(m.get('notifications_sent_per_packet'), 3)} | "
              f"{get(m, 'drops', 'no_buffer')} |")
            rows.append((c, d, m))
    w("")
    w("Stage breakdown (cycles/packet per poll-loop stage, `LcoreStats::stages`; the engine "
      "times these stages, not ring/grant/NIC/notification separately: grant operations are "
      "inside `guest_tx`, `rx_deliver` (copy) and `nic_rx`/`rx_post` (map), notifications "
      "inside `rx_deliver` and `tx_completions`):")
    w("")
    stages = ["commands", "tx_completions", "guest_tx", "nic_rx", "rx_deliver", "rx_post"]
    w("| device | mode | size | dir | " + " | ".join(stages) + " |")
    w("| --- | --- | --- | --- | " + " | ".join("---" for _ in stages) + " |")
    for c, d, m in rows:
        sc = m.get("stage_cycles_per_packet", {})
        w(f"| {c['device']} | {c['mode']} | {c['size']} | {d} | " +
          " | ".join(f(sc.get(s), 0) for s in stages) + " |")
    w("")
    w("Ceiling, dpdk-testpmd io-forward (`--forward-mode=io --nb-cores=1`; net_ring ports "
      "loop back what they send, started with `--tx-first`; net_tap fed by the same AF_PACKET "
      "generator):")
    w("")
    w("net_ring is saturated (cycles/packet = TSC Hz / forwarded pps); one AF_PACKET generator "
      "thread cannot saturate net_tap, so there the rate is the generator's and cycles/packet "
      "is testpmd's own count of busy cycles per packet (`--record-core-cycles`).")
    w("")
    w("| vdev | size | Mpps | cycles/packet | generator Mpps | cycles from |")
    w("| --- | --- | --- | --- | --- | --- |")
    for t in (mech or {}).get("testpmd", []):
        w(f"| {t['vdev']} | {t['size']} | {f(t.get('mpps'), 3)} | {f(t.get('cycles_per_packet'), 1)} | "
          f"{f(t.get('generator_mpps'), 3)} | {t.get('cycles_basis', '-')} |"
          + (f" error: {t['error']}" if "error" in t else ""))
    w("")
    paced = runs.get("mechanisms-paced")
    w("Flat out, each row above is bounded by something else (the generator, the guest's "
      "buffers, a map's system calls). The same mechanisms with the RX "
      "generator paced (`--rate` " + str(get(paced, "options", "rate")) + " frames/s), every "
      "mechanism at the same rate, RX only. At this rate the lcore sleeps between frames, so "
      "its busy cycles per frame are the frame's work plus one wake-up, with no spinning to "
      "take out: `lcore cycles/pkt` is the raw figure (the empty-poll correction of the "
      "flat-out table, beside it, overshoots when nearly every poll follows a wake-up):")
    w("")
    w("| device | mode | size | Mpps | offered Mpps | lcore cycles/pkt | corrected cycles/pkt | "
      "grant hypercalls/pkt | map ops/pkt | copy ops/pkt | IOTT hits/pkt | notifications/pkt | drops (no buffer) |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for c in (paced or {}).get("cases", []):
        m = c.get("rx")
        if not m:
            continue
        pk = m.get("packets") or 0
        w(f"| {c['device']} | {c['mode']} | {c['size']} | {f(m.get('mpps'), 4)} | "
          f"{f(m.get('offered_mpps'), 4)} | {f(m.get('lcore_cycles_per_packet'), 0)} | "
          f"{f(m.get('cycles_per_packet'), 0)} | {f(m.get('grant_hypercalls_per_packet'), 3)} | "
          f"{f(m.get('grant_map_ops_per_packet'), 3)} | {f(m.get('grant_copy_ops_per_packet'), 3)} | "
          f"{f((m.get('iott_hits') or 0) / pk if pk else None, 3)} | "
          f"{f(m.get('notifications_sent_per_packet'), 3)} | {get(m, 'drops', 'no_buffer')} |")
    w("")
    w("Reductions computed as the paper does (RX, lcore cycles per packet, from the paced run): per-guest queue with "
      "the guest's own buffers (map, tap) against the shared queue with copy (copy, ring); "
      "then reuse against map. Paper: 69 % and a further 53 %.")
    w("")
    merged["reductions"] = reductions_table(
        w, lambda d, mo, sz: get(case(paced, d, mo, sz), "rx", "lcore_cycles_per_packet"))
    w("")
    cg = runs.get("callgrind")
    w("Instructions per packet (valgrind callgrind, `bench/callgrind.sh`): the lcore's own "
      "user-space instructions inside its poll loop during each measured window (the tool "
      "zeroes callgrind's counts when a window starts and dumps them when it ends), divided "
      "by the window's packets. Repeatable under load, unlike cycles; the simulated "
      "hypervisor's grant code runs in the lcore's thread and is counted; the kernel (a map's "
      "mmap and unmap, the PMD's readv) and dpnb-simhv are not. Stages, by call: grant = GrantTable/TranslationTable, "
      "notification = EventChannels::notify, nic = the PMD's burst functions (librte_net_*, "
      "librte_ethdev), mbuf = mempool/mbuf libraries called from the loop, ring = the rest "
      "(netif ring parsing, inlined into the loop, validation, header copies, the loop).")
    w("")
    if not cg or not cg.get("rows"):
        w("not run (valgrind missing, or `bench/callgrind.sh` failed: see run.sh's output)")
    else:
        w("`without empty polls`: the same less the window's sleeps and empty polls at the "
          "cost one empty poll has in the case's calibration window (no traffic): a packet's "
          "cost where the queues never run dry.")
        w("")
        w("| device | mode | size | dir | packets | instructions/pkt | without empty polls | idle polls/pkt | ring | grant | nic | mbuf | notification |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in cg["rows"]:
            st = r.get("stages_per_packet", {})
            idle = r["idle_polls"] / r["packets"] if r.get("packets") and "idle_polls" in r else None
            w(f"| {r['device']} | {r['mode']} | {r['size']} | {r['phase']} | {r['packets']} | "
              f"{f(r.get('instructions_per_packet'), 0)} | {f(r.get('work_per_packet'), 0)} | "
              f"{f(idle, 2)} | {f(st.get('ring'), 0)} | "
              f"{f(st.get('grant'), 0)} | {f(st.get('nic'), 0)} | {f(st.get('mbuf'), 0)} | "
              f"{f(st.get('notification'), 1)} |")
        w("")

        def ipp(device, mode, size):
            for r in cg["rows"]:
                if (r["device"], r["mode"], r["size"], r["phase"]) == (device, mode, size, "rx"):
                    return r.get("instructions_per_packet")
            return None
        w("The paper's reductions in instructions (RX): map on the guest's own queue against "
          "copy on the shared queue, then reuse against map.")
        w("")
        merged["instruction_reductions"] = reductions_table(w, ipp)
        w("")
    data = ""
    for i, (c, d, m) in enumerate(rows):
        if m.get("lcore_cycles_per_packet"):
            data += f"\"{c['device']}-{c['mode']}-{c['size']}-{d}\" {m['lcore_cycles_per_packet']:.1f}\n"
    if data and gnuplot(
            'set style fill solid\nset boxwidth 0.7\nset ylabel "cycles/packet (log)"\n'
            'set logscale y\nset xtics rotate by -45\nset title "lcore cycles per packet by mechanism"\n'
            'plot datafile using 0:2:xtic(1) with boxes notitle\n',
            os.path.join(a.out, f"{a.date}-cycles.png"), data):
        w(f"![cycles per packet]({a.date}-cycles.png)")
        w("")

    # --- 3 ---------------------------------------------------------------------------------
    w("## 3. Scaling over guests and lcores")
    w("")
    w("`--devices ring --modes copy --sizes 64 --guests N --lcores L`: aggregate Mpps to the "
      "guests (RX) and from them (TX), and each guest's share of RX (fairness: min/max).")
    w("")
    w("| lcores | guests | RX Mpps | RX offered | TX Mpps | RX per guest (Mpps) | fairness min/max |")
    w("| --- | --- | --- | --- | --- | --- | --- |")
    plot = {}
    for n in names:
        mm = re.match(r"scaling-l(\d+)-g(\d+)$", n)
        if not mm:
            continue
        l, g = int(mm.group(1)), int(mm.group(2))
        c = (runs[n] or {}).get("cases", [None])[0]
        rx, tx = get(c, "rx"), get(c, "tx")
        per = [p["mpps"] for p in (get(rx, "per_guest") or [])]
        fair = (min(per) / max(per)) if per and max(per) > 0 else None
        plot.setdefault(l, []).append((g, get(rx, "mpps") or 0, get(tx, "mpps") or 0))
        w(f"| {l} | {g} | {f(get(rx, 'mpps'), 3)} | {f(get(rx, 'offered_mpps'), 3)} | "
          f"{f(get(tx, 'mpps'), 3)} | {' '.join(f(p, 3) for p in per)} | {f(fair, 2)} |")
    w("")
    if plot:
        data = ""
        for l in sorted(plot):
            for g, rx, tx in sorted(plot[l]):
                data += f"{g} {rx} {tx}\n"
            data += "\n\n"
        script = 'set xlabel "guests"\nset ylabel "Mpps"\nset title "aggregate rate, net_ring copy, 64 B"\nplot '
        script += ", ".join(
            f'datafile index {i} using 1:2 with linespoints title "RX, {l} lcore(s)", '
            f'datafile index {i} using 1:3 with linespoints title "TX, {l} lcore(s)"'
            for i, l in enumerate(sorted(plot))) + "\n"
        if gnuplot(script, os.path.join(a.out, f"{a.date}-scaling.png"), data):
            w(f"![scaling]({a.date}-scaling.png)")
            w("")

    # --- 4 ---------------------------------------------------------------------------------
    w("## 4. Grant reuse")
    w("")
    w("`--devices tap --modes reuse --sizes 1514 --phases rx --rate 5000 --hold 64` with the guest's "
      "`--buffer full` or `half`, and with `--pool-target 160 --pool-shrink-every 0.5` (every "
      "0.5 s the guest shrinks its pool to 160 pages, below its working set of 256 posted + 64 "
      "held buffers, retiring pages still in use: their translation-table entries are revoked "
      "once the daemon no longer counts them in flight, and the pages that rejoin are misses). "
      "Guest counters cover the guest's whole run; the daemon's over the window. Reuse rate = the guest's reuse_hits / rx_posts (docs/netfront.md); the "
      "daemon's translation-table hits and misses over the window beside it. Paper: 95 % with "
      "full pages, 99.4 % with half pages.")
    w("")
    w("| run | buffer (asked, bytes used) | guest reuse rate | IOTT hits | IOTT misses | pages added | pages removed | "
      "removals refused (in flight) | RX Mpps | lcore cycles/pkt |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    used_sizes = {}
    for n in ("reuse-full", "reuse-half", "reuse-shrink"):
        c = ((runs.get(n) or {}).get("cases") or [None])[0]
        rx = get(c, "rx")
        gs = (get(rx, "guest_side") or [{}])[0]
        used = used_sizes[n] = (gs.get("pool") or {}).get("buffer_size")
        w(f"| {n} | {get(runs.get(n), 'options', 'buffer')}, {used} | {f(gs.get('reuse_rate'), 3)} | "
          f"{get(rx, 'iott_hits')} | {get(rx, 'iott_misses')} | {gs.get('pool_pages_added')} | "
          f"{gs.get('pool_pages_removed')} | {gs.get('pool_removals_refused')} | "
          f"{f(get(rx, 'mpps'), 3)} | "
          f"{f(get(rx, 'lcore_cycles_per_packet'), 0)} |")
    w("")
    half_size = used_sizes["reuse-half"]
    w("Half pages use dpnetback's `feature-rx-buffer-offset` (docs/netfront.md): each RX "
      "request names its half of the page, the NIC writes the frame there, and both halves "
      "share the page's one translation-table entry. "
      + ("The guest posted 2048-byte buffers in the `reuse-half` run."
         if half_size == 2048 else
         f"**The guest did not get half pages in this run** (buffer size {half_size}): the "
         "`reuse-half` row is not a half-page figure."))
    w("")

    # --- 5 ---------------------------------------------------------------------------------
    w("## 5. Notifications and idle CPU")
    w("")
    sat = get(case(mech, "ring", "copy", 64), "rx")
    low = get(((runs.get("lowrate") or {}).get("cases") or [None])[0], "rx")
    w("| load | RX Mpps | notifications sent/pkt | notifications received/pkt |")
    w("| --- | --- | --- | --- |")
    w(f"| saturation (ring copy 64 B, generator flat out) | {f(get(sat, 'mpps'), 3)} | "
      f"{f(get(sat, 'notifications_sent_per_packet'), 4)} | {f(get(sat, 'notifications_received_per_packet'), 4)} |")
    w(f"| low rate (`--rate 10000`) | {f(get(low, 'mpps'), 3)} | "
      f"{f(get(low, 'notifications_sent_per_packet'), 4)} | {f(get(low, 'notifications_received_per_packet'), 4)} |")
    w("")
    w("Idle: one guest attached, no traffic, `getrusage` of the engine process (its lcore, "
      "control thread and EAL threads) over the window. On net_ring, which has no RX "
      "interrupt, the lcore must poll the port every `poll_sleep` (500 µs); on net_tap the "
      "port's RX interrupt and the guest's event channels wake it, so it sleeps up to "
      "`max_sleep`.")
    w("")
    w("| port | seconds | CPU, % of one core | lcore sleeps/s |")
    w("| --- | --- | --- | --- |")
    for n, label in (("idle", "net_ring (no RX interrupt)"), ("idle-tap", "net_tap (RX interrupt)")):
        idle = get(((runs.get(n) or {}).get("cases") or [None])[0], "idle")
        if idle is None:
            continue
        w(f"| {label} | {f(get(idle, 'seconds'), 1)} | {f(get(idle, 'cpu_percent_of_one_core'), 2)} | "
          f"{f(get(idle, 'lcore_sleeps_per_second'), 1)} |")
    w("")

    # --- 6 ---------------------------------------------------------------------------------
    w("## 6. Latency")
    w("")
    w("`--devices tap --phases latency`: an AF_PACKET socket on the tap's kernel side sends "
      "a 64-byte frame to the guest, one at a time with 1 ms gaps, and times the echo "
      "(dpnb-netfront --echo); round trip = kernel -> tap -> daemon RX -> guest -> daemon TX "
      "-> tap -> kernel.")
    w("")
    w("| mode | answered/sent | median µs | p99 µs | min µs | max µs |")
    w("| --- | --- | --- | --- | --- | --- |")
    for c in (runs.get("latency") or {}).get("cases", []):
        lt = c.get("latency", {})
        w(f"| {c['mode']} | {lt.get('answered')}/{lt.get('sent')} | {f(lt.get('median_us'), 1)} | "
          f"{f(lt.get('p99_us'), 1)} | {f(lt.get('min_us'), 1)} | {f(lt.get('max_us'), 1)} |")
    w("")

    # --- 7 ---------------------------------------------------------------------------------
    w("## 7. The peer on real Xen (e2e lab)")
    w("")
    # DPNB_LAB_SUMMARY: one or more saved outputs of tests/e2e/run.sh, colon-separated, in
    # the order they ran: a later verdict of a scenario replaces an earlier one (a scenario
    # re-run alone after a fix).
    labs = [p for p in (a.lab or "").split(":") if p]
    labs = [p for p in labs if os.path.exists(p)]
    if labs:
        verdicts, ratio = {}, None
        for p in labs:
            with open(p, errors="replace") as fd:
                for ln in fd:
                    m = re.match(r"\s*E2E (\S+) (PASS|FAIL)(.*)$", ln.rstrip())
                    if m:
                        kv = dict(re.findall(r"(\S+?)=(\S+)", m.group(3)))
                        verdicts[m.group(1)] = {"result": m.group(2), "keys": kv, "file": p}
                    if ln.startswith("== dpnetbackd / in-kernel netback:"):
                        ratio = ln.rstrip()
        merged["lab"] = {"files": labs, "verdicts": verdicts, "ratio_line": ratio}
        # Keep the verdict lines beside the report: the figures below come from them.
        lab_copy = os.path.join(a.out, f"{a.date}-lab.txt")
        with open(lab_copy, "w") as fd:
            for name, v in sorted(verdicts.items()):
                fd.write(f"E2E {name} {v['result']} " +
                         " ".join(f"{k}={x}" for k, x in v["keys"].items()) + "\n")
            if ratio:
                fd.write(ratio + "\n")
        w("From the output of `tests/e2e/run.sh` (Xen 4.17 under QEMU TCG, Linux 6.1 "
          "xen-netfront guests; verdict lines kept in "
          f"[{a.date}-lab.txt]({a.date}-lab.txt)). The same 4 MiB TCP transfer each way "
          "through dpnetbackd (`dpnetbackd-basic`, RX mode copy, shared queue) and through "
          "the in-kernel xen-netback (`kernel-netback`) in the same boot; dom0 CPU per byte "
          "= busy jiffies of all dom0 vCPUs over the transfer / bytes. tx = guest to dom0.")
        w("")
        d, k = verdicts.get("dpnetbackd-basic"), verdicts.get("kernel-netback")
        if d and k:
            w("| figure | dpnetbackd | in-kernel netback | dpnetbackd / in-kernel |")
            w("| --- | --- | --- | --- |")
            rows7 = []
            for key, label in (("tx_mbit", "guest to dom0, Mbit/s"),
                               ("rx_mbit", "dom0 to guest, Mbit/s"),
                               ("tx_dom0_ns_per_byte", "guest to dom0, dom0 CPU ns/byte"),
                               ("rx_dom0_ns_per_byte", "dom0 to guest, dom0 CPU ns/byte")):
                x, y = d["keys"].get(key), k["keys"].get(key)
                r = float(x) / float(y) if x and y and float(y) > 0 else None
                rows7.append({"figure": key, "dpnetbackd": x, "kernel": y, "ratio": r})
                w(f"| {label} | {x or '-'} | {y or '-'} | {f(r, 2)} |")
            merged["lab"]["ratios"] = rows7
            w("")
        w("| scenario | result | from |")
        w("| --- | --- | --- |")
        for name, v in sorted(verdicts.items()):
            w(f"| {name} | {v['result']} | `{os.path.basename(v['file'])}` |")
    else:
        merged["lab"] = "not run"
        w("not run. The lab (tests/e2e/run.sh, Xen 4.17 under QEMU) prints E2E lines and a "
          "`== dpnetbackd / in-kernel netback:` ratio line; save its output and run "
          "`DPNB_LAB_SUMMARY=<file>[:<file>...] bench/run.sh` to include them here.")
    w("")

    # --- 8 ---------------------------------------------------------------------------------
    w("## 8. Memory")
    w("")
    w("VmRSS of the engine process (EAL with `-m 512 --no-huge`, one lcore, the ring port) "
      "before the guests are attached and with them attached and idle.")
    w("")
    w("| guests | RSS before (MiB) | RSS attached (MiB) | per guest (KiB) |")
    w("| --- | --- | --- | --- |")
    for n in ("idle", "memory-many"):
        c = ((runs.get(n) or {}).get("cases") or [None])[0]
        i = get(c, "idle")
        if not i:
            continue
        b, at, g = i.get("rss_bytes_before_guests", 0), i.get("rss_bytes_with_guests", 0), i.get("attached", 0)
        per = (at - b) / g / 1024 if g else None
        w(f"| {g} | {f(b / 2**20, 1)} | {f(at / 2**20, 1)} | {f(per, 0)} |")
    w("")

    errors = []
    for n, doc in runs.items():
        if doc is None:
            errors.append(f"{n}: no JSON (see its log)")
            continue
        for c in doc.get("cases", []):
            for k in ("error", "leaks"):
                if k in c:
                    errors.append(f"{n} {c.get('device')} {c.get('mode')} {c.get('size')}: {k}: {c[k]}")
            for d in ("rx", "tx", "idle", "latency"):
                if isinstance(c.get(d), dict) and "error" in c[d]:
                    errors.append(f"{n} {c.get('device')} {c.get('mode')} {c.get('size')} {d}: {c[d]['error']}")
    if errors:
        w("## Errors during the run")
        w("")
        for e in errors:
            w(f"- {e}")
        w("")
    merged["errors"] = errors

    with open(os.path.join(a.out, a.date + ".json"), "w") as fd:
        json.dump(merged, fd, indent=1)
        fd.write("\n")
    with open(os.path.join(a.out, a.date + ".md"), "w") as fd:
        fd.write("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
