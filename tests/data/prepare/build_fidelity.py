"""A messy support data set with a ground truth for every record, to score `data prepare` against.

    truths = build(root, domain="kettle", n=800, seed=0)   # writes 4 files into root, returns the truth
    scores = score(truths, ledger, outputs)                 # the figures issue #15's targets read

Two domains (smart kettles, parcel delivery) so that nothing is tuned to one. Four formats: OpenAI
JSONL, ShareGPT JSON, Alpaca JSON and a CSV with a BOM and CRLF line ends. Beside ordinary records it
holds duplicate groups (exact and near, across files), similar-but-distinct pairs, HTML, mojibake,
glossary variants, trailing user turns, whitespace damage (tabs, runs of spaces, NBSP; lists and code
blocks that must keep their layout), personal data in many formats with look-alikes that are not
personal data, role aliases, invalid UTF-8 bytes, and a few percent of off-topic conversations.
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GLOSSARY = {"error": ["bug", "glitch"], "sign in": ["log in", "log-in", "signin"]}

DOMAINS: dict[str, dict[str, Any]] = {
    "kettle": {
        "system": "You are the support assistant for Brewly smart kettles and the Brewly app.",
        "description": "Customer support for Brewly smart kettles: setup, cleaning and settings. "
        "Accounts, passwords and sign in to the Brewly app. Orders, returns and subscriptions.",
        "products": ["K2 kettle", "Mini kettle", "travel kettle", "smart base", "Brewly app", "filter jug"],
        "tasks": [
            "descale",
            "pair with my phone",
            "reset",
            "update the firmware of",
            "clean",
            "register the warranty for",
            "return",
            "change the temperature on",
            "schedule a boil on",
            "share",
            "move to a new Wi-Fi network",
            "turn off the beep on",
        ],
        "details": [
            "after a power cut",
            "on a new phone",
            "for the first time",
            "without the app",
            "in a hard water area",
            "after the last update",
            "when the ring blinks red",
            "for my parents",
        ],
        "steps": [
            "open the Brewly app",
            "hold the power button for five seconds",
            "wait until the ring blinks blue",
            "tap Settings and then Kettle",
            "choose Network",
            "lift the kettle off its base",
            "fill it to the MAX mark",
            "boil a mix of water and white vinegar",
            "rinse the kettle twice",
            "press Confirm",
            "sign in to your account again",
            "check that your Wi-Fi uses 2.4 GHz",
            "slide the limescale filter out of the spout",
            "soak the filter in warm water",
            "select Firmware and then Install",
            "scan the QR code under the base",
            "start a return under Orders",
            "print the prepaid label we email you",
        ],
        "borderline": [
            (
                "What tea tastes best at 80 degrees?",
                "Green and white teas are best between 75 and 80 degrees.",
            ),
            (
                "Is it cheaper to boil water in a kettle or a microwave?",
                "A kettle is usually more efficient.",
            ),
        ],
    },
    "parcel": {
        "system": "You are the help desk of Parcelo, a parcel delivery service with an app and lockers.",
        "description": "Help desk for Parcelo parcel delivery: tracking parcels, delivery times, "
        "redirecting and rescheduling deliveries, lockers, customs fees, lost or damaged parcels and refunds.",
        "products": ["parcel", "Parcelo locker", "express parcel", "return parcel", "Parcelo app", "pallet"],
        "tasks": [
            "track",
            "redirect",
            "reschedule the delivery of",
            "pay the customs fee for",
            "collect",
            "report damage to",
            "claim a refund for",
            "change the address of",
            "book a pickup for",
            "insure",
            "cancel",
            "send",
        ],
        "details": [
            "from abroad",
            "while I am on holiday",
            "to my neighbour",
            "before Friday",
            "with a signature",
            "after a failed delivery",
            "for a business address",
            "on a weekend",
        ],
        "steps": [
            "open the Parcelo app",
            "enter the tracking number from your email",
            "tap Delivery options",
            "choose a new date",
            "pick a locker near you",
            "pay the customs fee by card",
            "take photos of the box and the label",
            "fill in the damage form",
            "wait for the courier's confirmation text",
            "print the return label",
            "drop it at any Parcelo shop",
            "scan the locker code at the screen",
            "add a safe place note",
            "confirm your address",
            "keep the packaging until we reply",
            "select Refund and the reason",
            "book the pickup slot",
            "show the collection code at the counter",
        ],
        "borderline": [
            (
                "How should I pack a glass vase to post it?",
                "Wrap it in bubble wrap and fill the gaps in the box.",
            ),
            ("What is the cheapest way to move house?", "Pack yourself and hire a van for one day."),
        ],
    },
}

OFF_TOPIC = [
    (
        "Give me a recipe for a {a} lasagne for four people.",
        "Layer pasta with {a} sauce and cheese, then bake it for forty minutes.",
    ),
    (
        "Who won the {a} world cup final?",
        "The final was won after extra time; the match is remembered for its {a} goal.",
    ),
    (
        "Write a short poem about the {a} sea.",
        "Waves roll in, the {a} tide sings, gulls circle over the grey water.",
    ),
    (
        "Explain how {a} black holes form.",
        "A massive star collapses at the end of its life; {a} black holes grow by merging.",
    ),
    (
        "What should I plant in a {a} garden in spring?",
        "Try peas, lettuce and radishes; a {a} garden likes early greens.",
    ),
    (
        "Recommend a {a} film for tonight.",
        "Try a classic {a} film with a strong story and a good soundtrack.",
    ),
    ("Solve 3x + 7 = {a} for x.", "Subtract 7 and divide by 3: x = ({a} - 7) / 3."),
    (
        "Tell me about the history of the {a} empire.",
        "The {a} empire rose through trade and conquest and fell centuries later.",
    ),
    (
        "How do I train my {a} puppy to sit?",
        "Hold a treat above its nose, say sit, and reward the {a} puppy at once.",
    ),
    ("What is the capital of {a}?", "The capital of {a} is its largest city and seat of government."),
]
OFF_FILL = [
    "vegetable",
    "Roman",
    "Ottoman",
    "quiet",
    "northern",
    "French",
    "small",
    "1998",
    "Peru",
    "dark",
    "25",
    "young",
]

PII_CASES = [  # (text with the value, the value, kind)
    ("Call me on +61 2 5550 1164 if the courier cannot find us.", "+61 2 5550 1164", "phone"),
    ("My number is +44 20 7946 0958, please text first.", "+44 20 7946 0958", "phone"),
    ("You can reach me at (415) 555-0132 after six.", "(415) 555-0132", "phone"),
    ("Phone 415-555-0199 is my work line.", "415-555-0199", "phone"),
    ("Mobile: +1 415 555 0100.", "+1 415 555 0100", "phone"),
    ("Ring 020 7946 0958 and ask for Sam.", "020 7946 0958", "phone"),
    ("My mobile is 0412 345 678 in Sydney.", "0412 345 678", "phone"),
    ("Berlin office: +49 30 901820.", "+49 30 901820", "phone"),
    ("Paris line +33 1 42 68 53 00 is fine.", "+33 1 42 68 53 00", "phone"),
    ("Try +1 (212) 555-0147 tomorrow.", "+1 (212) 555-0147", "phone"),
    ("Our server is at 192.168.4.154.", "192.168.4.154", "ip"),
    ("The router 10.0.0.138 drops the connection.", "10.0.0.138", "ip"),
    ("Write to ann.smith@example.com with the photos.", "ann.smith@example.com", "email"),
    ("My email is j.doe+orders@mail.example.org.", "j.doe+orders@mail.example.org", "email"),
    ("Card 4111 1111 1111 1111 was charged twice.", "4111 1111 1111 1111", "credit_card"),
    ("I paid with 5500-0000-0000-0004 last week.", "5500-0000-0000-0004", "credit_card"),
]
# Numbers that look like personal data and are not: they must come through unchanged.
LOOKALIKES = [
    "order 1234 5678 9012 3456",
    "on 2024-03-15",
    "version 2.3.1",
    "at 10:30",
    "serial SN 4412-9981",
    "for $1,299.00",
    "tracking 1Z999AA10123456784",
    "model K2-2200",
    "reference 48213 77410",
    "in 3 x 250 ml cups",
    "ticket #20240315",
    "from 9 to 5",
]
ALIASES = [
    ("human", "gpt"),
    ("USER", "ASSISTANT"),
    ("Human", "Assistant"),
    ("user", "bot"),
    ("User", "model"),
    ("human", "AI"),
]
MOJIBAKE = [("Café mode", "CafÃ© mode"), ("don’t", "donâ€™t"), ("naïve", "naÃ¯ve"), ("“on”", "â€œonâ€\x9d")]


@dataclass
class Truth:
    """What should become of one input record."""

    file: str
    loc: int  # line (JSONL, CSV) or index (JSON arrays), as the ledger writes it
    kind: str  # what the record tests
    expect: str = "keep"  # keep | drop | either (a tolerated outcome: both are right)
    topic: bool = True  # in the domain
    group: str | None = None  # duplicate group: exactly one member should survive
    messages: list[dict[str, str]] | None = None  # the exact output expected, when checked
    absent: list[str] = field(default_factory=list)  # text that must not be in the output
    present: list[str] = field(default_factory=list)  # text that must be in the output
    fix: str | None = None  # a fix kind the ledger must record


class Builder:
    def __init__(self, domain: str, seed: int):
        self.d = DOMAINS[domain]
        self.rng = random.Random(seed)
        self.files: dict[str, list[Any]] = {
            "openai.jsonl": [],
            "sharegpt.json": [],
            "alpaca.json": [],
            "faq.csv": [],
        }
        self.truths: list[Truth] = []
        self.n = 0

    # ---- content
    def exchange(self) -> tuple[str, str]:
        d, r = self.d, self.rng
        self.n += 1
        q = f"How do I {r.choice(d['tasks'])} my {r.choice(d['products'])} {r.choice(d['details'])}?"
        if r.random() < 0.5:
            q = r.choice(["Hi, ", "Hello! ", "Quick question: ", "Please help. "]) + q
        steps = r.sample(d["steps"], r.randint(3, 6))
        a = ", then ".join(steps).capitalize() + f". Case {self.n} is noted on your account."
        return q, a

    def conv(self, turns: int = 1, system: bool | None = None) -> list[dict[str, str]]:
        system = self.rng.random() < 0.6 if system is None else system
        msgs = [{"role": "system", "content": self.d["system"]}] if system else []
        for _ in range(turns):
            q, a = self.exchange()
            msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        return msgs

    # ---- writing
    def put(self, file: str, msgs: list[dict[str, str]], truth: Truth, raw: bytes | None = None) -> Truth:
        """Add a conversation to a file in that file's format; raw replaces the JSONL line or CSV row."""
        rows = self.files[file]
        if file == "openai.jsonl":
            rows.append(
                raw if raw is not None else json.dumps({"messages": msgs}, ensure_ascii=False).encode()
            )
            truth.loc = len(rows)
        elif file == "sharegpt.json":
            names = {"system": "system", "user": "human", "assistant": "gpt"}
            rows.append(
                {
                    "id": f"s{len(rows)}",
                    "conversations": [
                        {"from": names.get(m["role"], m["role"]), "value": m["content"]} for m in msgs
                    ],
                }
            )
            truth.loc = len(rows) - 1
        elif file == "alpaca.json":
            sys_ = [m["content"] for m in msgs if m["role"] == "system"]
            u, a = [m for m in msgs if m["role"] != "system"][:2]
            rows.append(
                {
                    "instruction": u["content"],
                    "input": "",
                    "output": a["content"],
                    **({"system": sys_[0]} if sys_ else {}),
                }
            )
            truth.loc = len(rows) - 1
        else:  # CSV: header is line 1; multi-line fields are kept off so each row is one line
            sys_ = [m["content"] for m in msgs if m["role"] == "system"]
            u, a = [m for m in msgs if m["role"] != "system"][:2]
            rows.append(raw if raw is not None else [u["content"], a["content"], sys_[0] if sys_ else ""])
            truth.loc = len(rows) + 1
        truth.file = file
        self.truths.append(truth)
        return truth

    def single_turn_file(self) -> str:
        return self.rng.choice(["openai.jsonl", "sharegpt.json", "alpaca.json", "faq.csv"])

    def write(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        (root / "openai.jsonl").write_bytes(b"".join(r + b"\n" for r in self.files["openai.jsonl"]))
        (root / "sharegpt.json").write_text(
            json.dumps(self.files["sharegpt.json"], ensure_ascii=False, indent=1), encoding="utf-8"
        )
        (root / "alpaca.json").write_text(
            json.dumps(self.files["alpaca.json"], ensure_ascii=False, indent=1), encoding="utf-8"
        )
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        w.writerow(["question", "answer", "sys"])
        parts = [b"\xef\xbb\xbf", buf.getvalue().encode()]
        for row in self.files["faq.csv"]:
            if isinstance(row, bytes):
                parts.append(row + b"\r\n")
            else:
                buf = io.StringIO()
                csv.writer(buf, lineterminator="\r\n").writerow(row)
                parts.append(buf.getvalue().encode("utf-8"))
        (root / "faq.csv").write_bytes(b"".join(parts))


def build(root: Path, domain: str = "kettle", n: int = 800, seed: int = 0) -> list[Truth]:
    """Write openai.jsonl, sharegpt.json, alpaca.json and faq.csv into root; return one Truth per record."""
    b = Builder(domain, seed)
    r = b.rng
    d = b.d
    plan: list[str] = []
    counts = {
        "dup_group": 14,
        "similar_pair": 8,
        "html": 15,
        "mojibake": 12,
        "glossary": 15,
        "trailing_user": 12,
        "whitespace": 25,
        "layout": 8,
        "pii": 32,
        "lookalike": 12,
        "alias": 14,
        "unknown_role": 3,
        "bad_utf8": 10,
        "garbage_utf8": 2,
        "off_topic": 30,
        "borderline": 2,
        "invalid_json": 3,
        "empty": 3,
    }
    for k, c in counts.items():
        plan += [k] * c
    plan += ["plain"] * max(0, n - len(plan) - 2 * counts["dup_group"] - counts["similar_pair"])
    r.shuffle(plan)
    pii_i = alias_i = moji_i = off_i = look_i = border_i = 0
    for g, kind in enumerate(plan):
        if kind == "plain":
            file = b.single_turn_file() if r.random() < 0.6 else "openai.jsonl"
            multi = file in ("openai.jsonl", "sharegpt.json")
            msgs = b.conv(r.choice([1, 1, 2]) if multi else 1)
            b.put(file, msgs, Truth("", 0, kind, messages=msgs))
        elif kind == "dup_group":
            msgs = b.conv(1)
            size = r.choice([2, 3, 4])
            for j in range(size):
                variant = [dict(x) for x in msgs]
                if j and r.random() < 0.5:  # near copy: case, punctuation, one word more
                    variant[-1]["content"] = (
                        variant[-1]["content"].upper()
                        if r.random() < 0.3
                        else variant[-1]["content"] + " Thanks!"
                    )
                b.put(b.single_turn_file(), variant, Truth("", 0, kind, expect="keep", group=f"g{g}"))
        elif kind == "similar_pair":
            q, a = b.exchange()
            prod = d["products"]
            for j in range(2):
                q2 = q.replace("?", f" using the {prod[j]}?")
                a2 = f"For the {prod[j]}: " + ", then ".join(r.sample(d["steps"], 4)) + "."
                msgs = [{"role": "user", "content": q2}, {"role": "assistant", "content": a2}]
                b.put("openai.jsonl", msgs, Truth("", 0, kind, messages=msgs))
        elif kind == "html":
            msgs = b.conv(1)
            a = msgs[-1]["content"]
            msgs[-1]["content"] = (
                f"<p>Here is how:</p><ul><li>{a}</li><li>Contact us if it <b>still</b> fails</li></ul>"
            )
            b.put(
                b.single_turn_file(),
                msgs,
                Truth(
                    "",
                    0,
                    kind,
                    absent=["<li>", "<b>", "</p>"],
                    present=[a, "Contact us if it still fails"],
                    fix="html",
                ),
            )
        elif kind == "mojibake":
            good, bad = MOJIBAKE[moji_i % len(MOJIBAKE)]
            moji_i += 1
            msgs = b.conv(1)
            clean = [dict(x) for x in msgs]
            clean[-1]["content"] += f" The {good} setting helps."
            msgs[-1]["content"] += f" The {bad} setting helps."
            b.put("openai.jsonl", msgs, Truth("", 0, kind, messages=clean, fix="unicode"))
        elif kind == "glossary":
            v = r.choice(["bug", "glitch", "log in", "log-in"])
            term = "error" if v in ("bug", "glitch") else "sign in"
            msgs = b.conv(1)
            msgs[-2]["content"] += f" There is a {v} in the app."
            b.put(
                b.single_turn_file(),
                msgs,
                Truth("", 0, kind, present=[f"There is a {term} in the app."], fix="glossary"),
            )
        elif kind == "trailing_user":
            msgs = b.conv(r.choice([1, 2]))
            expected = [dict(x) for x in msgs]
            msgs.append({"role": "user", "content": "Thanks, and one more thing"})
            b.put(
                r.choice(["openai.jsonl", "sharegpt.json"]),
                msgs,
                Truth("", 0, kind, messages=expected, fix="trimmed_trailing_user"),
            )
        elif kind == "whitespace":
            msgs = b.conv(1, system=False)
            expected = [dict(x) for x in msgs]
            damaged = []
            for m in msgs:
                words = m["content"].split(" ")
                out = words[0]
                for w in words[1:]:
                    out += r.choice([" ", " ", " ", "  ", "\t", "\u00a0", " \t ", "   "]) + w
                damaged.append(
                    {
                        "role": m["role"],
                        "content": r.choice(["", " ", "\t"]) + out + r.choice(["", "  ", "\t"]),
                    }
                )
            b.put(
                r.choice(["openai.jsonl", "sharegpt.json", "alpaca.json", "faq.csv"]),
                damaged,
                Truth("", 0, kind, messages=expected, fix="whitespace"),
            )
        elif kind == "layout":  # lists and code blocks with damage only in the prose: layout must survive
            q, a = b.exchange()
            body = (
                a
                + "\n\nDo this:\n\n1. Open the app\n2. Tap Settings\n   - then Advanced\n\n```python\ndef check(box):\n    if box.ok:\n        return  True\n```\nDone."
            )
            msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": body}]
            damaged = [
                msgs[0],
                {
                    "role": "assistant",
                    "content": body.replace("Do this:", "Do\t\tthis:").replace("Done.", "Done.   "),
                },
            ]
            b.put("openai.jsonl", damaged, Truth("", 0, kind, messages=msgs))
        elif kind == "pii":
            text, value, _ = PII_CASES[pii_i % len(PII_CASES)]
            pii_i += 1
            msgs = b.conv(1)
            msgs[-2]["content"] += " " + text
            b.put(b.single_turn_file(), msgs, Truth("", 0, kind, absent=[value], fix="pii"))
        elif kind == "lookalike":
            text = LOOKALIKES[look_i % len(LOOKALIKES)]
            look_i += 1
            msgs = b.conv(1)
            msgs[-1]["content"] += f" This is about the one {text}."
            b.put(b.single_turn_file(), msgs, Truth("", 0, kind, present=[text]))
        elif kind == "alias":
            u, a = ALIASES[alias_i % len(ALIASES)]
            alias_i += 1
            msgs = b.conv(1, system=False)
            raw = [{"role": u if m["role"] == "user" else a, "content": m["content"]} for m in msgs]
            b.put(
                "openai.jsonl",
                raw,
                Truth("", 0, kind, messages=msgs, fix="role_alias"),
                raw=json.dumps({"messages": raw}).encode(),
            )
        elif kind == "unknown_role":
            msgs = b.conv(1, system=False)
            raw = [
                {"role": "narrator" if m["role"] == "user" else m["role"], "content": m["content"]}
                for m in msgs
            ]
            b.put(
                "openai.jsonl",
                raw,
                Truth("", 0, kind, expect="drop"),
                raw=json.dumps({"messages": raw}).encode(),
            )
        elif kind == "bad_utf8":
            msgs = b.conv(1, system=False)
            expected = [dict(x) for x in msgs]
            file = r.choice(["openai.jsonl", "faq.csv"])
            if file == "openai.jsonl":
                raw = json.dumps({"messages": msgs}).encode().replace(b" then", b" \xff\xfethen", 1)
            else:
                raw = (
                    ",".join(json.dumps(m["content"]) for m in msgs)
                    .encode()
                    .replace(b" then", b" \xc3then", 1)
                    + b","
                )
            b.put(file, msgs, Truth("", 0, kind, messages=expected, fix="utf8_repaired"), raw=raw)
        elif kind == "garbage_utf8":  # mostly undecodable: too little text is left, so it is dropped
            raw = (
                b'{"messages": [{"role": "user", "content": "'
                + bytes(r.randrange(0x80, 0xC0) for _ in range(60))
                + b'?"}, {"role": "assistant", "content": "\xff\xfe\xfd\xfc\xfb ok"}]}'
            )
            b.put("openai.jsonl", [], Truth("", 0, kind, expect="drop"), raw=raw)
        elif kind == "off_topic":
            q, a = OFF_TOPIC[off_i % len(OFF_TOPIC)]
            fill = OFF_FILL[(off_i * 7) % len(OFF_FILL)]
            off_i += 1
            msgs = [
                {"role": "user", "content": q.format(a=fill)},
                {"role": "assistant", "content": a.format(a=fill)},
            ]
            if r.random() < 0.5:
                msgs.insert(0, {"role": "system", "content": d["system"]})
            b.put(b.single_turn_file(), msgs, Truth("", 0, kind, expect="drop", topic=False))
        elif kind == "borderline":
            q, a = d["borderline"][border_i % len(d["borderline"])]
            border_i += 1
            b.put(
                "openai.jsonl",
                [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                Truth("", 0, kind, expect="either"),
            )
        elif kind == "invalid_json":
            b.put(
                "openai.jsonl",
                [],
                Truth("", 0, kind, expect="drop"),
                raw=b'{"messages": [{"role": "user", "content": "broken',
            )
        elif kind == "empty":
            msgs = b.conv(1, system=False)
            msgs[-1]["content"] = "  "
            b.put("openai.jsonl", msgs, Truth("", 0, kind, expect="drop"))
    b.write(root)
    return b.truths


# ----------------------------------------------------------------------------------------------------
# scoring


def score(
    truths: list[Truth], ledger: list[dict[str, Any]], outputs: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """The issue's figures from the ledger and the written train/val rows (OpenAI-shaped dicts)."""
    by_key = {(Path(e["file"]).name, e.get("line", e.get("index"))): e for e in ledger}
    out_of: dict[tuple[str, int], list[dict[str, str]] | None] = {}
    for t in truths:
        e = by_key[(t.file, t.loc)]
        out_of[(t.file, t.loc)] = (
            outputs[e["split"]][e["output_line"] - 1]["messages"] if e["status"] != "dropped" else None
        )
    kept = {k for k, v in out_of.items() if v is not None}

    # Units that should survive: each record expected "keep", each duplicate group once.
    # A record expected "either" counts as survived in the tolerant figure whatever became of it.
    units: dict[str, list[Truth]] = {}
    for t in truths:
        if t.expect != "drop" and t.topic:
            units.setdefault(t.group or f"{t.file}:{t.loc}", []).append(t)
    strict = sum(any((t.file, t.loc) in kept for t in ts) for ts in units.values())
    tolerant = sum(any((t.file, t.loc) in kept or t.expect == "either" for t in ts) for ts in units.values())
    n_units = len(units)
    # Precision: kept records that should be there (not off-topic, not expected dropped, one per group).
    good = 0
    seen_groups: set[str] = set()
    for t in truths:
        if (t.file, t.loc) not in kept:
            continue
        if t.expect == "drop" or not t.topic:
            continue
        if t.group:
            if t.group in seen_groups:
                continue
            seen_groups.add(t.group)
        good += 1

    def share(kind: str, ok: Any) -> tuple[int, int]:
        ts = [t for t in truths if t.kind == kind]
        return sum(bool(ok(t)) for t in ts), len(ts)

    def text(t: Truth) -> str:
        msgs = out_of[(t.file, t.loc)] or []
        return "\n".join(m["content"] for m in msgs)

    def exact(t: Truth) -> bool:
        got = out_of[(t.file, t.loc)]
        if got is None or t.messages is None:
            return False
        strip = [
            m for m in t.messages if not (t.file in ("alpaca.json", "faq.csv") and m["role"] == "system")
        ]
        got = [m for m in got if not (t.file in ("alpaca.json", "faq.csv") and m["role"] == "system")]
        return [(m["role"], m["content"]) for m in got] == [(m["role"], m["content"]) for m in strip]

    all_text = "\n".join(m["content"] for rows in outputs.values() for row in rows for m in row["messages"])
    pii_values = [v for _, v, _ in PII_CASES]
    in_topic = [t for t in truths if t.topic and t.expect != "drop"]
    off = [t for t in truths if not t.topic]
    return {
        "units": n_units,
        "survival_strict": strict / n_units,
        "survival_tolerant": tolerant / n_units,
        "precision": good / len(kept) if kept else 1.0,
        "whitespace_fixed": share("whitespace", exact),
        "layout_kept": share("layout", exact),
        "mojibake_fixed": share("mojibake", exact),
        "trailing_user_fixed": share("trailing_user", exact),
        "aliases_kept": share("alias", exact),
        "utf8_recovered": share("bad_utf8", exact),
        "html_fixed": share(
            "html",
            lambda t: (
                text(t) and all(a not in text(t) for a in t.absent) and all(p in text(t) for p in t.present)
            ),
        ),
        "glossary_fixed": share("glossary", lambda t: all(p in text(t) for p in t.present)),
        "pii_redacted": share("pii", lambda t: text(t) and all(a not in text(t) for a in t.absent)),
        "pii_leaked": sum(v in all_text for v in pii_values),
        "lookalikes_kept": share("lookalike", lambda t: all(p in text(t) for p in t.present)),
        "similar_pairs_kept": share("similar_pair", lambda t: (t.file, t.loc) in kept),
        "dup_groups_kept_once": sum(
            sum((t.file, t.loc) in kept for t in truths if t.group == g) == 1
            for g in {t.group for t in truths if t.group}
        ),
        "dup_groups": len({t.group for t in truths if t.group}),
        "off_topic_dropped": sum(by_key[(t.file, t.loc)].get("reason") == "off_scope" for t in off)
        / max(1, len(off)),
        "in_topic_dropped_off_scope": sum(
            by_key[(t.file, t.loc)].get("reason") == "off_scope" for t in in_topic if t.expect == "keep"
        )
        / max(1, len(in_topic)),
    }
