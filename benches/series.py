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

  series.py TRACE   prints: calls <n> series <k>
"""
import bisect
import json
import sys

calls = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
calls.sort(key=lambda c: c["end"])
ends = [c["end"] for c in calls]
best = []  # best[i]: the longest chain ending with calls[i]
prefix_max = []
for c in calls:
    # Calls answered before this one started (a small tolerance for the
    # clock reads on either side of the same moment).
    j = bisect.bisect_right(ends, c["start"] + 1e-6)
    longest_before = prefix_max[j - 1] if j > 0 else 0
    best.append(longest_before + 1)
    prefix_max.append(max(prefix_max[-1], best[-1]) if prefix_max else best[-1])
print(f"calls {len(calls)} series {max(best) if best else 0}")
