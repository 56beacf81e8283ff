#!/usr/bin/env python3
"""Wakeup-to-run delays from `perf script` of sched_wakeup/sched_switch, per woken thread kind,
split by whether the waker ran on the target CPU; for the long ones, what ran meanwhile."""
import re, sys, collections
wake_re = re.compile(r'^\s*(\S.*?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:sched_wakeup:\s+comm=(\S+) pid=(\d+) prio=(\d+) target_cpu=(\d+)')
sw_re = re.compile(r'^\s*(\S.*?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:sched_switch:\s+prev_comm=(.+?) prev_pid=(\d+) prev_prio=(\d+) prev_state=(\S+) ==> next_comm=(.+?) next_pid=(\d+) next_prio=(\d+)')
pending = {}
comm_of = {}
outs = collections.defaultdict(lambda: [0, 0])  # pid -> [R, S]
delays = []  # (delay_us, kind, same, target_cpu, ran_meanwhile)
running = {}  # cpu -> (pid, comm, since)
ran = collections.defaultdict(lambda: collections.Counter())  # cpu -> Counter of comm time while a wakeup waits
waiting = {}
spans = {}
for line in open(sys.argv[1], errors='replace'):
    m = wake_re.match(line)
    if m:
        wcomm, wpid, cpu, t, comm, pid, prio, tcpu = m.groups()
        pid = int(pid)
        comm_of[pid] = comm
        if pid not in pending:
            pending[pid] = (float(t), int(cpu), int(tcpu), wcomm, int(prio))
        continue
    m = sw_re.match(line)
    if m:
        _, _, cpu, t, pc, pp, ppr, pst, nc, npid, npr = m.groups()
        cpu, t, pp, npid = int(cpu), float(t), int(pp), int(npid)
        comm_of[pp] = pc; comm_of[npid] = nc
        outs[pp][0 if pst.startswith('R') else 1] += 1
        span = spans.setdefault(pp, [t, t, int(ppr)])
        span[1] = t
        if npid in pending:
            wt, wcpu, tcpu, wcomm, prio = pending.pop(npid)
            delays.append(((t - wt) * 1e6, npid, wcpu == tcpu, cpu, pc, pp, wcomm, prio, wt))
hogs = {p for p, (r, s) in outs.items() if comm_of.get(p) == 'compare' and s <= 2 and r > 100 and spans[p][1] - spans[p][0] > 0.01}
def kind(pid):
    c = comm_of.get(pid, '?')
    if c.startswith('fp-worker'): return 'worker'
    if c.startswith('fp-warm'): return 'companion'
    if c == 'compare' and pid not in hogs: return 'pod thread (client/server)'
    return None
def pct(v, q):
    v = sorted(v); return v[min(len(v) - 1, int(q * len(v)))] if v else float('nan')
# Hog phases: the time spans of the hogs, merged; each labelled by the hogs' priority.
phases = []
for p in sorted(hogs, key=lambda p: spans[p][0]):
    a, b, prio = spans[p]
    if phases and a <= phases[-1][1]:
        phases[-1][1] = max(phases[-1][1], b)
    else:
        phases.append([a, b, prio])
for i, (a, b, prio) in enumerate(phases):
    print(f"phase {i}: hogs at prio {prio} (nice {prio - 120}) from {a:.3f} to {b:.3f} ({b - a:.2f} s)")
want = int(sys.argv[2]) if len(sys.argv) > 2 else 0
lo, hi = phases[want][0], phases[want][1]
print(f"analysing phase {want}")
wakes_at = {}
groups = collections.defaultdict(list)
for d in delays:
    k = kind(d[1])
    if not (lo <= d[8] <= hi):
        continue
    if k: groups[(k, 'same CPU' if d[2] else 'cross-CPU (IPI)')].append(d)
print(f"hog pids: {sorted(hogs)}")
print("| woken thread | waker | count | p50 us | p90 us | p99 us | max us | >1 ms |")
print("|---|---|--:|--:|--:|--:|--:|--:|")
for (k, s), ds in sorted(groups.items()):
    v = [d[0] for d in ds]
    print(f"| {k} | {s} | {len(v)} | {pct(v,.5):.1f} | {pct(v,.9):.1f} | {pct(v,.99):.1f} | {max(v):.1f} | {sum(1 for x in v if x > 1000)} |")
print()
print("Wakeups of pod threads that waited > 1 ms: the thread switched out to let them run")
c = collections.Counter()
for d in delays:
    if lo <= d[8] <= hi and kind(d[1]) == 'pod thread (client/server)' and d[0] > 1000:
        who = 'a hog' if d[5] in hogs else d[4]
        c[(who, 'same CPU' if d[2] else 'cross-CPU')] += 1
for (who, s), n in c.most_common():
    print(f"- {n} x waited for {who} ({s} wakeup)")
