#!/usr/bin/env python3
"""Is the first draw of a critic special? Where it ranks among its draws, over many runs.

Every critic of a run samples its critiques from the same seeds (draw 1); `[eval] draws`
evaluates a critic again with critique seeds of each draw's own (`base-draw-2`, ...). If the
first draw's seeds favoured or hurt a critic, its CU would rank low or high among the draws
of the same run more often than chance. Under no such effect, its rank is uniform.

usage: draw_ranks.py [--critic base] RUN_DIR...

Each RUN_DIR is a run (its eval.jsonl) whose `[eval] draws` evaluated CRITIC several times;
the runs should differ in their seed (`RCO_SEED`). Prints the first draw's mean mid-rank
(ties share their ranks) with what a uniform rank gives, and the mean of its CU minus the
mean CU of the other draws, with its standard error.

To make the runs (the reduced quickstart of the tests, 20 draws, run seeds 1 to 66):

    for s in $(seq 1 66); do
      RCO_SEED=$s RCO_CRITIC__WARM_START__STEPS=60 RCO_CRITIC__WARM_START__BATCH_SIZE=128 \
      RCO_DATA__TRAIN_ITEMS=128 RCO_DATA__TEST_ITEMS=90 RCO_EVAL__ACTORS='["weak"]' \
      RCO_EVAL__ITEMS_PER_BATCH=30 RCO_EVAL__DRAWS__BASE=20 \
      rco eval configs/quickstart.toml --out runs/draws/s$s \
        --critics base$(for k in $(seq 2 20); do printf ',base-draw-%d' $k; done)
    done
    python3 scripts/draw_ranks.py runs/draws/s*
"""
import argparse
import collections
import json
import math
import pathlib
import statistics
import sys


def critic_cus(run, critic):
    """CU ×100 of each draw of `critic` in a run: {name: mean CU}."""
    per = collections.defaultdict(list)
    path = pathlib.Path(run) / "eval.jsonl"
    with open(path) as f:
        for number, line in enumerate(f, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{number}: not JSON: {e}")
            name = record["critic"]
            if record.get("cu") is not None and (
                name == critic or name.startswith(f"{critic}-draw-")
            ):
                per[name].append(record["cu"])
    return {name: 100 * sum(v) / len(v) for name, v in per.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--critic", default="base")
    parser.add_argument("runs", nargs="+")
    args = parser.parse_args()
    ranks, diffs, sizes = [], [], set()
    for run in args.runs:
        cus = critic_cus(run, args.critic)
        if args.critic not in cus or len(cus) < 2:
            sys.exit(f"{run}: eval.jsonl has no draws of critic `{args.critic}` besides the first")
        sizes.add(len(cus))
        first = cus[args.critic]
        below = sum(v < first for v in cus.values())
        tied = sum(v == first for v in cus.values()) - 1
        ranks.append(1 + below + tied / 2)
        diffs.append(first - statistics.mean(v for k, v in cus.items() if k != args.critic))
    if len(sizes) != 1:
        sys.exit(f"the runs evaluated different numbers of draws: {sorted(sizes)}")
    k, n = sizes.pop(), len(ranks)
    null_sd = math.sqrt((k * k - 1) / 12 / n)
    mean_rank = statistics.mean(ranks)
    print(f"{n} runs, {k} draws of `{args.critic}` each")
    print(
        f"first draw's mean rank (1 = lowest CU): {mean_rank:.2f}; "
        f"uniform: {(k + 1) / 2:.2f} ± {null_sd:.2f} (z = {(mean_rank - (k + 1) / 2) / null_sd:+.1f})"
    )
    print(f"first draw in the lowest two: {sum(r <= 2 for r in ranks)}, highest two: {sum(r >= k - 1 for r in ranks)}")
    if n > 1:
        se = statistics.stdev(diffs) / math.sqrt(n)
        print(
            f"first draw − mean of the others: {statistics.mean(diffs):+.2f} CU points "
            f"± {se:.2f} (standard error; sd per run {statistics.stdev(diffs):.2f})"
        )


if __name__ == "__main__":
    main()
