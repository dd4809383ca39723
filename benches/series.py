#!/usr/bin/env python3
"""Round trips in series, from a fault proxy's --trace (not from wall time).

Each line of the trace is one request: when the proxy got it and when it
answered. A call that starts only after another has been answered depends
on it (or was at least not sent alongside it); the longest chain of calls in
which each starts after the one before was answered is the number of round
trips the command made in series: its wall time is at least that many
latencies. The chain is found exactly: sort by answer time, and take the
longest chain ending at each call (interval scheduling). With injected
latency L (fault_proxy --latency-ms) every call lasts at least L, so calls
sent together are not mistaken for a chain.

  series.py TRACE           prints: calls <n> series <k>
  series.py TRACE --chain   also the longest chain's calls, one a line
"""
import bisect
import json
import sys

calls = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
calls.sort(key=lambda c: c["end"])
ends = [c["end"] for c in calls]
best = []  # best[i]: the longest chain ending with calls[i]
prev = []  # prev[i]: the call before calls[i] in that chain
prefix_max = []  # prefix_max[i]: index of the longest chain among calls[..=i]
for i, c in enumerate(calls):
    # Calls answered before this one started (a small tolerance for the
    # clock reads on either side of the same moment).
    j = bisect.bisect_right(ends, c["start"] + 1e-6)
    before = prefix_max[j - 1] if j > 0 else None
    best.append((best[before] if before is not None else 0) + 1)
    prev.append(before)
    prefix_max.append(i if not prefix_max or best[i] > best[prefix_max[-1]] else prefix_max[-1])
print(f"calls {len(calls)} series {max(best) if best else 0}")
if "--chain" in sys.argv[2:] and calls:
    chain, i = [], prefix_max[-1]
    while i is not None:
        chain.append(calls[i])
        i = prev[i]
    t0 = min(c["start"] for c in calls)
    for c in reversed(chain):
        print(f"  {c['start'] - t0:8.3f}s  {c.get('op')}")
