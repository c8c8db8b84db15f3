"""Prints ours/peer throughput ratios per benchmark group at the end of the run."""

OURS_PREFIXES = ("test_symbreak", "test_ours")      # benchmarks/test_mlp.py names ours "test_ours_..."


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    bs = getattr(config, "_benchmarksession", None)
    if bs is None or not getattr(bs, "benchmarks", None):
        return
    groups = {}
    for b in bs.benchmarks:
        if b.stats is None:  # disabled or failed
            continue
        groups.setdefault(b.group, []).append(b)
    lines = []
    for g, bench in sorted(groups.items(), key=lambda kv: str(kv[0])):
        ours = [b for b in bench if b.name.startswith(OURS_PREFIXES)]
        if not ours:
            continue
        o = min(ours, key=lambda b: b.stats.min)
        for b in bench:
            if b is not o:
                lines.append(f"  {g}: {o.name} / {b.name} throughput = {b.stats.min / o.stats.min:.2f}x"
                             f" (best of the rounds)")
    if lines:
        terminalreporter.write_sep("-", "symbreak_fast ratios vs peers (same run)")
        for line in lines:
            terminalreporter.write_line(line)
