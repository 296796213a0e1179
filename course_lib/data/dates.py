"""A generated translation task: dates as people write them -> ISO dates (introduced in notebook 06_training).

"3rd of March 2021", "Wed, 3 Mar 21", "03/03/2021" and "MARCH 3, 2021" all become
"2021-03-03". The model must find the day, the month and the year wherever the format puts
them, and reorder them: a small task that needs attention, learns in a minute on a CPU and
can be checked exactly.

Conventions, so that every input has one answer: numeric dates put the day first
(03/04/2021 is the 3rd of April); two-digit years mean 1950-2049 (50-99 -> 19xx,
00-49 -> 20xx), the range the dates are drawn from.

The splits are held out by calendar day: a day in the test split appears in no format in the
training split, so test accuracy measures generalisation, not memory.
"""
from __future__ import annotations

import datetime as dt
import random
from typing import Callable

from ..validation import check, check_int, check_number, check_type

FIRST_DAY, LAST_DAY = dt.date(1950, 1, 1), dt.date(2049, 12, 31)
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _month(d: dt.date) -> str:
    return MONTHS[d.month - 1]


def _weekday(d: dt.date) -> str:
    return WEEKDAYS[d.weekday()]


FORMATS: list[Callable[[dt.date], str]] = [
    lambda d: f"{d.day} {_month(d)} {d.year}",                            # 3 March 2021
    lambda d: f"{_ordinal(d.day)} of {_month(d)} {d.year}",               # 3rd of March 2021
    lambda d: f"{_month(d)} {d.day}, {d.year}",                           # March 3, 2021
    lambda d: f"{_month(d)} {_ordinal(d.day)}, {d.year}",                 # March 3rd, 2021
    lambda d: f"{_weekday(d)} {d.day} {_month(d)} {d.year}",              # Wednesday 3 March 2021
    lambda d: f"{_weekday(d)[:3]}, {d.day} {_month(d)[:3]} {d.year % 100:02d}",  # Wed, 3 Mar 21
    lambda d: f"{d.day} {_month(d)[:3]} {d.year}",                        # 3 Mar 2021
    lambda d: f"{_month(d)[:3].upper()} {d.day:02d} {d.year}",            # MAR 03 2021
    lambda d: f"{d.day:02d}/{d.month:02d}/{d.year}",                      # 03/03/2021
    lambda d: f"{d.day}/{d.month}/{d.year % 100:02d}",                    # 3/3/21
    lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",                      # 03.03.2021
    lambda d: f"the {_ordinal(d.day)} of {_month(d).lower()}, {d.year}",  # the 3rd of march, 2021
    lambda d: f"{_weekday(d).lower()}, {_month(d).lower()} {d.day}, {d.year}",  # wednesday, march 3, 2021
]


def human_date(day: dt.date, style: int) -> str:
    """``day`` written in format number ``style`` (0 <= style < len(FORMATS))."""
    check_type("day", day, dt.date, "a datetime.date")
    check_int("style", style, 0, len(FORMATS) - 1)
    return FORMATS[style](day)


def iso_date(day: dt.date) -> str:
    """The target: YYYY-MM-DD."""
    check_type("day", day, dt.date, "a datetime.date")
    return day.isoformat()


def date_splits(sizes: dict[str, int] | None = None, seed: int = 0,
                fractions: dict[str, float] | None = None) -> dict[str, list[tuple[str, str]]]:
    """(human date, ISO date) pairs for each split (introduced in notebook 06_training).

    The calendar days from 1950-01-01 to 2049-12-31 are shuffled with ``seed`` and divided
    among the splits by ``fractions`` (default 80% train, 10% validation, 10% test); then each
    split draws ``sizes[name]`` pairs (default 20000 / 1000 / 1000) from its own days, each in a
    random format. The same seed gives the same pairs on every machine.
    """
    sizes = sizes or {"train": 20000, "val": 1000, "test": 1000}
    fractions = fractions or {"train": 0.8, "val": 0.1, "test": 0.1}
    check(isinstance(sizes, dict), "sizes", "a dict of split name -> number of pairs", sizes, TypeError)
    check(isinstance(fractions, dict), "fractions", "a dict of split name -> fraction of the days", fractions,
          TypeError)
    for name, size in sizes.items():
        check_int(f"sizes[{name!r}]", size, low=0)
    for name, fraction in fractions.items():
        check_number(f"fractions[{name!r}]", fraction, 0.0, 1.0)
    check_int("seed", seed)
    if set(sizes) != set(fractions) or abs(sum(fractions.values()) - 1) > 1e-9:
        raise ValueError(f"sizes and fractions must name the same splits and fractions sum to 1, "
                         f"got {sorted(sizes)} and {fractions}")
    rng = random.Random(seed)
    days = [FIRST_DAY + dt.timedelta(n) for n in range((LAST_DAY - FIRST_DAY).days + 1)]
    rng.shuffle(days)
    splits, start = {}, 0
    for name in sorted(fractions):  # a fixed order, so the split does not depend on dict order
        count = round(fractions[name] * len(days))
        own = days[start:start + count]
        start += count
        check(bool(own) or not sizes[name], f"fractions[{name!r}]", "large enough to give the split at least "
              "one calendar day", fractions[name])
        picks = [rng.choice(own) for _ in range(sizes[name])]
        splits[name] = [(human_date(d, rng.randrange(len(FORMATS))), iso_date(d)) for d in picks]
    return {name: splits[name] for name in sizes}
