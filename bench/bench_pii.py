"""Phone-number detection compared on a fixed set of formats and look-alikes (issue #15, point 4).

    python bench/bench_pii.py

Three detectors, each run on every sentence: the hand-written pattern chattune used before (digit
groups of 2-4 with separators, 7-15 digits, no date shape), `phonenumbers.PhoneNumberMatcher` run once
per region (US, GB, AU), and what chattune uses now: a broader candidate pattern whose matches must
be valid numbers for phonenumbers (`chattune.data.pii`). Found = the number is replaced; a false hit =
a look-alike (order, date, version, serial, price...) that a detector replaced.
"""

from __future__ import annotations

import re

import phonenumbers

from chattune.config.prepare import PiiConfig
from chattune.data.pii import redact

NUMBERS = [
    "+61 2 5550 1164",
    "+44 20 7946 0958",
    "(415) 555-0132",
    "415-555-0199",
    "+1 415 555 0100",
    "020 7946 0958",
    "0412 345 678",
    "+49 30 901820",
    "+33 1 42 68 53 00",
    "+1 (212) 555-0147",
    "415.555.0123",
    "+14155550111",
    "(02) 5550 1164",
    "07911 123456",
    "+44 7911 123456",
    "+61 412 345 678",
    "1-800-555-0199",
    "+91 98765 43210",
    "+81 3-1234-5678",
    "0161 496 0000",
    "+353 1 555 0140",
    "212 555 0147",
    "+34 912 34 56 78",
    "+1-202-555-0173",
]
LOOKALIKES = [
    "order 1234 5678 9012 3456",
    "on 2024-03-15",
    "on 15.03.2024",
    "on 03/15/2024",
    "version 2.3.1",
    "build 10.2.4.1234",
    "at 10:30",
    "serial SN 4412-9981",
    "for $1,299.00",
    "tracking 1Z999AA10123456784",
    "model K2-2200",
    "reference 48213 77410",
    "in 3 x 250 ml cups",
    "ticket #20240315",
    "from 9 to 5",
    "zip 94103",
    "part 100-200-300",
    "ISBN 978-0-306-40615-7",
    "room 1204",
    "invoice 2024-000123",
    "weighs 1 250 g",
    "code 4412 9981",
    "between 2019 and 2023",
    "IBAN GB82 WEST 1234 5698 7654 32",
    "coordinates 51.5074, -0.1278",
    "batch 20240315-01",
    "port 8080",
]
OLD_PHONE_RE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,3}(?![\w-])"
)
REGIONS = ("US", "GB", "AU")


def old_pattern(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        s = m.group(0)
        date = re.fullmatch(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}", s.strip())
        return "[PHONE]" if 7 <= sum(c.isdigit() for c in s) <= 15 and not date else s

    return OLD_PHONE_RE.sub(repl, text)


def matcher(text: str) -> str:
    for region in REGIONS:
        for m in reversed(list(phonenumbers.PhoneNumberMatcher(text, region))):
            text = text[: m.start] + "[PHONE]" + text[m.end :]
    return text


def chattune(text: str) -> str:
    cfg = PiiConfig(email=False, credit_card=False, ip=False)
    return redact(text, cfg)[0]


def main() -> None:
    print(f"{len(NUMBERS)} phone formats, {len(LOOKALIKES)} look-alikes")
    for name, fn in (
        ("hand-written pattern", old_pattern),
        ("PhoneNumberMatcher", matcher),
        ("candidates + phonenumbers", chattune),
    ):
        found = [n for n in NUMBERS if n not in fn(f"Call me on {n} please.")]
        false = [x for x in LOOKALIKES if x not in fn(f"It is about the one {x}.")]
        missed = [n for n in NUMBERS if n not in found]
        print(
            f"{name:28s} found {len(found):2d}/{len(NUMBERS)}  false hits {len(false):2d}/{len(LOOKALIKES)}"
            f"  missed: {missed}  false: {false}"
        )


if __name__ == "__main__":
    main()
