"""Print the Leapfrog-style order set's table for the README, the misses and the orders that wait for a branch.

    PYTHONPATH=. .venv/bin/python -m tests.order_set_report

The figures are computed by tests/test_order_set_cpoe.py (the same judging the tests assert on).
"""

from __future__ import annotations

import sys

from tests.test_order_set_cpoe import BRANCHES, counted, outcomes, table


def main() -> int:
    every = outcomes()
    print("Orders with their feature on main (the targets: >= 95% caught, 0 interruptive alerts on quiet orders):\n")
    print(table(counted()))
    waiting = [o for o in every if o.needs]
    print(f"\nOrders waiting for a branch ({len(waiting)}; not in the figures above):\n")
    print(table(waiting))
    print("\nEvery order (as if the branches were merged today):\n")
    print(table(every))
    misses = [o for o in counted() if not o.passed]
    print(f"\nMisses among the counted orders ({len(misses)}):")
    for o in misses:
        print(f"  {o.order_id} ({o.category}, expect {o.expect}): {o.detail}")
    for branch in BRANCHES:
        ids = [o for o in waiting if branch in o.needs]
        if ids:
            passing = sum(o.passed for o in ids)
            print(f"\nneeds {branch} ({len(ids)} orders, {passing} already pass):")
            for o in ids:
                print(f"  {o.order_id} ({o.category}, expect {o.expect}){'' if o.passed else ': ' + o.detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
