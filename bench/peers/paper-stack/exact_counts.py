#!/usr/bin/env python3
"""Exact recount of the reference experiment straight from the generated CSVs, and a check
of a pipeline's three output files against it.

  exact_counts.py --data DIR [--out EXPECTED_DIR] [--check GOT_DIR]

Rules (design brief, "The reference experiment"): a non-empty user_log line after the header
with 7 fields whose user_id, time_stamp and action_type are integers is valid (an empty line
is skipped, anything else is rejected); a valid row with action_type 2 is an order, every row
its own event. Orders are joined with user_info on user_id and labelled as `tributary demo`
labels them; days are time_stamp padded to 4 digits. Prints the totals as JSON; with --check,
compares the three CSV files byte for byte and exits 1 on any difference.
"""
import argparse
import json
import os
import re
import sys

AGE = {"1": "<18", "2": "18-24", "3": "25-29", "4": "30-34", "5": "35-39", "6": "40-49", "7": ">=50", "8": ">=50"}
AGE_ORDER = ["<18", "18-24", "25-29", "30-34", "35-39", "40-49", ">=50", "unknown"]
GENDER = {"0": "female", "1": "male"}
GENDER_ORDER = ["female", "male", "unknown"]
INTEGER = re.compile(r"-?[0-9]+\Z")
FILES = ("orders_by_age.csv", "orders_by_gender.csv", "orders_by_day.csv")


def recount(data):
    users = {}
    with open(os.path.join(data, "user_info_format1.csv"), newline="") as f:
        assert f.readline().rstrip("\r\n") == "user_id,age_range,gender"
        for line in f:
            line = line.rstrip("\n").rstrip("\r")
            if not line:
                continue
            p = line.split(",")
            users[p[0]] = (AGE.get(p[1] if len(p) > 1 else "", "unknown"), GENDER.get(p[2] if len(p) > 2 else "", "unknown"))
    sent = orders = filtered = rejected = 0
    age, gender, day = {}, {}, {}
    with open(os.path.join(data, "user_log_format1.csv"), newline="") as f:
        assert f.readline().rstrip("\r\n") == "user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type"
        for line in f:
            line = line.rstrip("\n").rstrip("\r")
            if not line:
                continue
            sent += 1
            p = line.split(",")
            if len(p) != 7 or not all(INTEGER.match(p[i]) for i in (0, 5, 6)):
                rejected += 1
                continue
            if p[6] != "2":
                filtered += 1
                continue
            orders += 1
            a, g = users.get(p[0], ("unknown", "unknown"))
            age[a] = age.get(a, 0) + 1
            gender[g] = gender.get(g, 0) + 1
            d = p[5].rjust(4, "0")
            day[d] = day.get(d, 0) + 1

    def share(n):
        return "%.4f" % (n / orders if orders else 0.0)

    csv = {
        "orders_by_age.csv": "age_range,orders,share\n" + "".join(f"{k},{age.get(k, 0)},{share(age.get(k, 0))}\n" for k in AGE_ORDER),
        "orders_by_gender.csv": "gender,orders,share\n"
        + "".join(f"{k},{gender.get(k, 0)},{share(gender.get(k, 0))}\n" for k in GENDER_ORDER),
        "orders_by_day.csv": "day,orders\n" + "".join(f"{k},{day[k]}\n" for k in sorted(day)),
    }
    return {"lines": sent, "orders": orders, "filtered": filtered, "rejected": rejected}, csv


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out")
    ap.add_argument("--check")
    a = ap.parse_args()
    totals, csv = recount(a.data)
    print(json.dumps(totals))
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        for name, text in csv.items():
            with open(os.path.join(a.out, name), "w") as f:
                f.write(text)
    if a.check:
        bad = 0
        for name in FILES:
            try:
                with open(os.path.join(a.check, name)) as f:
                    got = f.read()
            except OSError as e:
                print(f"{name}: MISSING ({e})")
                bad += 1
                continue
            if got == csv[name]:
                print(f"{name}: equal to the exact recount")
                continue
            bad += 1
            want_rows = dict(l.split(",")[:2] for l in csv[name].splitlines()[1:])
            got_rows = dict(l.split(",")[:2] for l in got.splitlines()[1:] if "," in l)
            diff = [f"{k}: want {want_rows.get(k, '-')} got {got_rows.get(k, '-')}"
                    for k in sorted(set(want_rows) | set(got_rows)) if want_rows.get(k) != got_rows.get(k)]
            print(f"{name}: DIFFERS ({len(diff)} rows with other counts)" + "".join(f"\n  {d}" for d in diff[:20]))
        sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
