"""Wikidata parse throughput per core, each against a baseline in the same run.

1. JSON dump lines -> entity rows: our reader (orjson) vs the same walk on stdlib ``json.loads``.
2. Truthy N-Triples lines -> facts: the fast path (rdflib only for lines it does not recognise)
   vs every line through rdflib's N-Triples parser. Both must give identical facts.

Input: the real 2017 dump excerpt (../shared/data) when present, else the project's fixture;
N-Triples: the fixture's truthy lines for many subjects, mixed with the statement shapes the
truthy dump is mostly made of (external ids, dates, quantities, other items) that the reader
must recognise and drop. Single process = one core.

    .venv/bin/python bench/bench_wikidata.py [--json-repeat 20] [--nt-lines 200000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from kgcurate.wikidata import language_order
from kgcurate.wikidata.json_entity import entity_to_row, parse_lines, strip_dump_line
from kgcurate.wikidata.ntriples import parse_nt_lines

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "wikidata" / "latest-all-2017-head50.json"
FIXTURE = REPO / "tests" / "fixtures" / "wikidata"


def best_of(fn, rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_json(repeat: int) -> None:
    src = REAL if REAL.exists() else FIXTURE / "sample.json"
    lines = src.read_bytes().split(b"\n") * repeat
    mb = sum(len(x) + 1 for x in lines) / 1e6
    langs = language_order(["en"])

    def ours():
        return parse_lines(lines, langs)

    def baseline():
        rows = []
        for line in lines:
            body = strip_dump_line(line)
            if body is not None:
                rows.append(entity_to_row(json.loads(body), langs))
        return rows

    n = len(ours().rows)
    assert [r["qid"] for r in baseline()] == [r["qid"] for r in ours().rows]
    t_ours, t_base = best_of(ours), best_of(baseline)
    print(f"JSON  input {src.name} x{repeat}: {n:,} entities, {mb:.1f} MB")
    print(f"  baseline json.loads+walk: {n / t_base:10,.0f} entities/s/core  {mb / t_base:7.1f} MB/s/core")
    print(f"  ours (orjson):            {n / t_ours:10,.0f} entities/s/core  {mb / t_ours:7.1f} MB/s/core"
          f"   speed-up x{t_base / t_ours:.2f}")


def nt_corpus(n_lines: int) -> list[str]:
    template = (FIXTURE / "sample-truthy.nt").read_text(encoding="utf-8").splitlines()
    wd, wdt = "<http://www.wikidata.org/entity/Q{}>", "<http://www.wikidata.org/prop/direct/{}>"
    other = [
        wdt.format("P214") + ' "113230702" .',
        wdt.format("P569") + ' "1952-03-11T00:00:00Z"^^<http://www.w3.org/2001/XMLSchema#dateTime> .',
        wdt.format("P2048") + ' "1.96"^^<http://www.w3.org/2001/XMLSchema#decimal> .',
        wdt.format("P27") + " <http://www.wikidata.org/entity/Q145> .",
        wdt.format("P646") + ' "/m/0282x" .',
        "<http://schema.org/name> \"Douglas Adams\"@fr .",
    ]
    out: list[str] = []
    k = 0
    while len(out) < n_lines:
        k += 1
        for line in template:  # the fixture's lines for a fresh subject id
            out.append(line.replace("/Q", f"/Q{k}0").replace("Special:EntityData/Q", f"Special:EntityData/Q{k}0"))
        for j in range(len(template) * 3):  # ~3/4 of a real truthy dump is statements we drop
            out.append(f"{wd.format(k * 10 + j % 7)} {other[j % len(other)]}")
    return out[:n_lines]


def bench_nt(n_lines: int) -> None:
    lines = nt_corpus(n_lines)
    mb = sum(len(x.encode()) + 1 for x in lines) / 1e6
    fast = parse_nt_lines(lines, ["en"], mode="auto")
    slow = parse_nt_lines(lines, ["en"], mode="rdflib")
    assert fast.facts == slow.facts and not fast.bad and not slow.bad
    t_fast = best_of(lambda: parse_nt_lines(lines, ["en"], mode="auto"))
    t_slow = best_of(lambda: parse_nt_lines(lines, ["en"], mode="rdflib"), rounds=1)
    print(f"N-Triples: {len(lines):,} lines, {mb:.1f} MB, {len(fast.facts):,} facts kept, "
          f"{fast.slow:,} lines with escapes sent to rdflib")
    print(f"  baseline rdflib every line: {len(lines) / t_slow:10,.0f} lines/s/core  {mb / t_slow:6.1f} MB/s/core")
    print(f"  fast path + rdflib rest:    {len(lines) / t_fast:10,.0f} lines/s/core  {mb / t_fast:6.1f} MB/s/core"
          f"   speed-up x{t_slow / t_fast:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json-repeat", type=int, default=10, help="times the excerpt is repeated")
    ap.add_argument("--nt-lines", type=int, default=100_000)
    args = ap.parse_args()
    bench_json(args.json_repeat)
    bench_nt(args.nt_lines)


if __name__ == "__main__":
    main()
