"""`sale loadtest`'s summary: one table row per mechanism and agent count, and under it the
ratios issue 25 sets targets for, computed here so nobody computes them by hand."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from marketplace.performance.loadtest import Row

METHOD = (
    "CPU by role: psutil's CPU time of each process over a row's measured span, in % of one "
    "core. The agents run many to a process, grouped by role: those the auction calls in "
    "processes of their own, apart from those it never calls (the paper auction calls every "
    "agent; which the lean auction calls is asked of its own policy, on the priors it gives "
    "agents it has no fitted prior for, with drafts that pass: the cheapest); 'client' is "
    "this process, which posts the tasks and watches the auctions close. Messages per "
    "auction: the high-water marks of every topic under the row's prefix, before and after."
)

CPU_ROLES = ("broker", "auctioneer", "called agents", "never called agents", "client")


@dataclass(frozen=True)
class Measured:
    """One mechanism at one agent count: the row at saturation, and the paced one at half its
    rate (whose latency is the one that counts)."""

    mechanism: str
    agents: int
    best: Row
    paced: Row


def table(measured: list[Measured], raw_per_s: float) -> str:
    """The summary table (Markdown), then the ratios."""
    head = (
        "| mechanism | agents | in flight | auctions/s | messages/auction | machinery, % of raw "
        "| award p50 | award p99 | CPU broker | auctioneer | called agents | never-called agents "
        "| client |"
    )
    lines = ["", head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines.append(
        f"| raw broker, 1 KiB records | | | {raw_per_s:,.0f} msg/s | | 100 | | | | | | | |"
    )
    for m in measured:
        cpu = [_cpu(m.best.cpu, role) for role in CPU_ROLES]
        lines.append(
            f"| {m.mechanism} | {m.agents} | {m.best.in_flight} | {m.best.rate.per_s:,.1f} "
            f"| {m.best.messages_per_auction:.1f} | {share(m, raw_per_s):.1f} "
            f"| {m.paced.rate.p50_ms:,.0f} ms | {m.paced.rate.p99_ms:,.0f} ms | "
            + " | ".join(cpu)
            + " |"
        )
    lines.append(
        "(auctions/s, messages, machinery and CPU at saturation; award latency post → close "
        "in the paced row, at half that rate; CPU in % of one core)"
    )
    lines += ["", *ratios(measured, raw_per_s)]
    return "\n".join(lines)


def _cpu(cpu: dict[str, float], role: str) -> str:
    return f"{cpu[role]:.0f}%" if role in cpu else "–"


def share(m: Measured, raw_per_s: float) -> float:
    """The machinery at saturation (messages per auction × auctions/s), % of the raw rate."""
    return 100 * m.best.messages_per_s / raw_per_s


def ratios(measured: list[Measured], raw_per_s: float) -> list[str]:
    """Issue 25's figures, per mechanism (its targets are the lean auction's)."""
    lines = []
    for mechanism in dict.fromkeys(m.mechanism for m in measured):
        at = {m.agents: m for m in measured if m.mechanism == mechanism}
        lines.append(f"{mechanism}:")
        lines += [f"  {line}" for line in _ratios(at, raw_per_s, lean=mechanism == "lean")]
    return lines


P99_TARGETS_MS = {4: 50.0, 64: 75.0}  # award p99 beyond the agents' time, by agent count


def _ratios(at: dict[int, Measured], raw_per_s: float, lean: bool) -> list[str]:
    """The figures of one mechanism; a lean figure that has a target says whether it is met."""
    few, many = (4, 64) if 4 in at and 64 in at else (min(at), max(at))
    lines = []

    def figure(text: str, met: bool | None) -> None:
        """The figure; the lean auction's with its target, if it has one, met or missed."""
        if not lean:
            text = text.split(" (target")[0]
        lines.append(text + (f": {'met' if met else 'missed'}" if lean and met is not None else ""))

    if few != many:
        r = at[many].best.rate.per_s / at[few].best.rate.per_s
        target = (few, many) == (4, 64)
        figure(
            f"auctions/s at {many} agents ÷ at {few}: {r:.2f} (target ≥ 0.8 at 64 ÷ 4)",
            r >= 0.8 if target else None,
        )
    for n in sorted(at):
        never = at[n].best.cpu.get("never called agents")
        if never is not None:
            figure(
                f"CPU of the agents never called, {n} agents: {never:.1f}% of one core in all "
                "(target ≤ 5% at 64)",
                never <= 5 if n == 64 else None,
            )
    for n in sorted(at):
        s = share(at[n], raw_per_s)
        figure(
            f"machinery at saturation, {n} agents: {s:.1f}% of the raw broker rate (target ≥ 10%)",
            s >= 10,
        )
    for n in sorted({few, many}):
        p99, target = at[n].paced.rate.p99_ms, P99_TARGETS_MS.get(n)
        goal = f" (target ≤ {target:.0f} ms)" if target else ""
        figure(
            f"award p99 at half the saturation rate, {n} agents: {p99:.0f} ms beyond the "
            f"agents' time (scripted agents take none){goal}",
            p99 <= target if target else None,
        )
    return lines
