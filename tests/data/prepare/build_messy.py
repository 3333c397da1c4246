"""Build the messy multi-format data set that `chattune data prepare` is tested on.

    python tests/data/prepare/build_messy.py tests/data/prepare     # rewrites the files next to this script

Every defect the preparation stage must handle is here once or more, and `EXPECTED` says what should
happen to it, keyed by (file, line-or-index). Tests build a fresh copy in a temporary folder.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

SYSTEM = "You are the support assistant for Brewly kettles and the Brewly app."

# Ordinary, in-scope, distinct conversations: the background every defect sits in.
TOPICS = [
    (
        "descale the K2 kettle",
        "Fill it with equal parts water and white vinegar, boil once, wait an hour, then rinse twice.",
    ),
    (
        "pair the kettle with my phone",
        "Open the app, tap Add device, and hold the kettle's power button until the ring blinks blue.",
    ),
    (
        "change the target temperature",
        "In the app choose your kettle, tap Temperature, and drag the slider; it saves automatically.",
    ),
    (
        "update the kettle firmware",
        "Keep the kettle on its base, open Settings in the app and tap Firmware, then Install.",
    ),
    (
        "reset my account password",
        "Use Forgot password on the sign in screen; a reset link arrives by email within minutes.",
    ),
    (
        "cancel my Brewly subscription",
        "Go to Account, then Subscription, and choose Cancel; you keep access until the period ends.",
    ),
    (
        "stop the kettle beeping",
        "Open Sounds under the kettle's settings in the app and switch Beep on boil off.",
    ),
    (
        "clean the limescale filter",
        "Slide the kettle filter out from the spout, soak it in warm soapy water, and let it dry before refitting.",
    ),
    (
        "keep water warm for longer",
        "Turn on Keep warm in the app; the kettle holds the temperature for up to thirty minutes.",
    ),
    (
        "find my order number",
        "Your order number is in the confirmation email and under Orders in your Brewly account.",
    ),
    (
        "return a damaged kettle",
        "Start a return under Orders in your account; we send a prepaid label and replace it on arrival.",
    ),
    (
        "use the kettle abroad",
        "The K2 works on 220 to 240 volts only; on 110 volt mains you need a step-up transformer.",
    ),
    (
        "schedule a morning boil",
        "In the app open Schedules, add a time and the days, and leave the kettle on its base with water.",
    ),
    (
        "share the kettle with my family",
        "Under Account choose Household and invite each person by email; they get their own profile.",
    ),
    (
        "the app says the kettle is offline",
        "Check the kettle is on its base and your Wi-Fi is 2.4 GHz; then pull the plug for ten seconds.",
    ),
    (
        "the water tastes of plastic",
        "Boil a full kettle and discard it three times; the taste of a new kettle fades after a few days.",
    ),
    (
        "change the light ring colour",
        "Open Light in the kettle's settings and pick a colour for each temperature preset.",
    ),
    (
        "see my energy use",
        "The Energy tab in the app shows kilowatt hours per day and per month for each kettle.",
    ),
    (
        "know how full to fill the kettle",
        "Between the MIN and MAX marks; below MIN the kettle switches off to protect the element.",
    ),
    (
        "register my warranty",
        "Register the serial number from the base under Account, then Warranty, within ninety days.",
    ),
    (
        "turn off notifications",
        "In the app open Account, then Notifications, and switch off the ones you do not want.",
    ),
    (
        "what does the red light mean",
        "A red ring means the kettle boiled dry and cooled down; refill it and press the button once.",
    ),
    (
        "connect the kettle to my smart speaker",
        "Enable the Brewly skill in your speaker's app and sign in with your Brewly account.",
    ),
    (
        "move the kettle to a new Wi-Fi network",
        "In the kettle's settings choose Network, then Change, and follow the pairing steps again.",
    ),
]


def conv(user: str, answer: str, system: bool = True) -> dict:
    msgs = [{"role": "system", "content": SYSTEM}] if system else []
    return {"messages": [*msgs, {"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


def line(obj: object) -> bytes:
    return (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")


# (file, line or index) -> ("kept" | "fixed:<fix>" | "dropped:<reason>")
EXPECTED: dict[tuple[str, int], str] = {}


def build(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    chat: list[bytes] = []

    def add(raw: bytes, expect: str | None = None) -> None:
        chat.append(raw)
        if expect:
            EXPECTED[("chat.jsonl", len(chat))] = expect

    for topic, answer in TOPICS[:16]:
        add(line(conv(f"How do I {topic}?", answer)), "kept")
    add(b'{"messages": [{"role": "user", "content": "broken line\n', "dropped:invalid_json")
    add(
        b'{"messages": [{"role": "user", "content": "caf\xe9 kettle \xff"}, {"role": "assistant", "content": "ok"}]}\n',
        "fixed:utf8_repaired",
    )
    add(
        line(
            {
                "messages": [
                    {"role": "narrator", "content": "Once upon a kettle"},
                    {"role": "assistant", "content": "Hello"},
                ]
            }
        ),
        "dropped:unknown_role",
    )
    add(
        line(
            {
                "messages": [
                    {"role": "user", "content": "Why is my kettle slow?"},
                    {"role": "assistant", "content": "   "},
                ]
            }
        ),
        "dropped:empty_turn",
    )
    add(
        line(
            conv(
                "My kettle shows cafÃ© mode and the display says â€œerrorâ€\x9d, what now?",
                "That is the Café preset; hold the button to leave it. The kettle is fine.",
            )
        ),
        "fixed:unicode",
    )
    add(
        line(
            conv(
                "How do I set up the kettle?",
                "<p>Open the <b>Brewly app</b> and follow these steps:</p><ul><li>Tap Add device</li><li>Hold the kettle button</li></ul>",
            )
        ),
        "fixed:html",
    )
    add(
        line(
            conv(
                "My account email is ann.smith@example.com and my number is +44 20 7946 0958. Card 4111 1111 1111 1111 was charged twice from 192.168.0.12, order 1234 5678 9012 3456.",
                "Sorry about the double charge on your account; we refunded it.",
            )
        ),
        "fixed:pii",
    )
    add(
        line(
            conv(
                "I found a Bug when I log-in to the app, see https://brewly.example/bug and `bug_id`",
                "That BUG is fixed in version 2.3 of the app; please log in again.",
            )
        ),
        "fixed:glossary",
    )
    add(
        line(
            conv(
                "Give me a simple recipe for a vegetable lasagne for four people.",
                "Layer the pasta sheets with tomato sauce, spinach and cheese, then bake it in a hot oven for about forty minutes.",
            )
        ),
        "dropped:off_scope",
    )
    add(
        line(
            conv(
                "Wie entkalke ich meinen Wasserkocher am besten?",
                "Füllen Sie ihn mit Wasser und Essig, kochen Sie ihn einmal auf und spülen Sie ihn danach gründlich aus.",
            )
        ),
        "dropped:language",
    )
    add(line([1, 2, 3]), "dropped:not_an_object")
    add(
        line(
            {
                "messages": [
                    {"role": "user", "content": "How do I clean the base of my kettle?"},
                    {
                        "role": "assistant",
                        "content": "Wipe it with a dry cloth only; never put the base in water.",
                    },
                    {"role": "user", "content": "Thanks"},
                ]
            }
        ),
        "fixed:trimmed_trailing_user",
    )
    add(
        line(
            {
                "messages": [
                    {"role": "user", "content": "kettle"},
                    {"role": "user", "content": "kettle?"},
                    {"role": "assistant", "content": "Yes?"},
                ]
            }
        ),
        "dropped:consecutive_same_role",
    )
    add(
        line(
            {
                "messages": [
                    {"role": "user", "content": "kettle help"},
                    {"role": "system", "content": SYSTEM},
                    {"role": "assistant", "content": "Sure."},
                ]
            }
        ),
        "dropped:system_not_first",
    )
    add(
        line(
            {
                "messages": [
                    {"role": "user", "content": "Can the kettle boil milk?", "name": "ann"},
                    {"role": "assistant", "content": "No, only water; milk burns onto the element."},
                ]
            }
        ),
        "fixed:stripped_keys",
    )
    add(
        line(
            conv(
                "Does the kettle\u200b work with\u00a0oat\u200d milk\x07?",
                "No, the kettle is for water only.",
            )
        ),
        "fixed:whitespace",
    )
    add(line(conv("kettle kettle kettle", " ".join(["the kettle is great"] * 30))), "dropped:repetitive")
    # A long multi-turn conversation: truncated from the front to the final exchange plus the system prompt.
    long_turns = [{"role": "system", "content": SYSTEM}]
    for topic, answer in TOPICS[:8]:
        long_turns += [
            {"role": "user", "content": f"Also, how do I {topic}?"},
            {"role": "assistant", "content": answer},
        ]
    long_turns += [
        {"role": "user", "content": "Last one: is the kettle dishwasher safe?"},
        {"role": "assistant", "content": "No, rinse the kettle by hand."},
    ]
    add(line({"messages": long_turns}), "fixed:truncated")
    # One huge final answer: nothing to truncate, so it is dropped as a length outlier.
    add(
        line(
            conv(
                "Tell me everything about the kettle",
                " ".join(f"Kettle fact number {i} concerns part {i * 7} of the base." for i in range(120)),
            )
        ),
        "dropped:length_outlier",
    )
    # A similar-but-distinct pair: same question shape, different platform and different answer.
    add(
        line(
            conv(
                "How do I reset my password on the website?",
                "On brewly.example click Sign in, then Forgot password, and follow the link we email you.",
            )
        ),
        "kept",
    )
    add(
        line(
            conv(
                "How do I reset my password in the mobile app?",
                "In the app tap Profile, then Security, then Change password; you need your current one.",
            )
        ),
        "kept",
    )
    add(b"\n")  # blank lines are not records
    (root / "chat.jsonl").write_bytes(b"".join(chat))

    # ShareGPT JSON array: an exact copy of chat.jsonl line 1, a near copy of line 2, and two new ones.
    t0, t1 = TOPICS[0], TOPICS[1]
    share = [
        {
            "id": "s0",
            "conversations": [
                {"from": "system", "value": SYSTEM},
                {"from": "human", "value": f"How do I {t0[0]}?"},
                {"from": "gpt", "value": t0[1]},
            ],
        },
        {
            "id": "s1",
            "conversations": [
                {"from": "system", "value": SYSTEM},
                {"from": "human", "value": f"How do I {t1[0]}, please?"},
                {"from": "gpt", "value": t1[1]},
            ],
        },
        {
            "id": "s2",
            "conversations": [
                {"from": "system", "value": SYSTEM},
                {"from": "human", "value": f"How do I {TOPICS[16][0]}?"},
                {"from": "gpt", "value": TOPICS[16][1]},
            ],
        },
        {
            "id": "s3",
            "conversations": [
                {"from": "human", "value": f"Quick question: how do I {TOPICS[17][0]}?"},
                {"from": "bot", "value": TOPICS[17][1]},
            ],
        },
        {
            "id": "s4",
            "conversations": [
                {"from": "human", "value": "What is on TV tonight for kettle fans?"},
                {"from": "critic", "value": "Nothing."},
            ],
        },
    ]
    EXPECTED.update(
        {
            ("sharegpt.json", 0): "dropped:exact_duplicate",
            ("sharegpt.json", 1): "dropped:near_duplicate",
            ("sharegpt.json", 2): "kept",
            ("sharegpt.json", 3): "kept",
            ("sharegpt.json", 4): "dropped:unknown_role",
        }
    )
    (root / "sharegpt.json").write_text(json.dumps(share, ensure_ascii=False, indent=1), encoding="utf-8")

    # CSV with a BOM, a quoted multi-line answer, a case/punctuation variant of ShareGPT s2, and a bad byte.
    t16, t18, t19 = TOPICS[16], TOPICS[18], TOPICS[19]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["question", "answer", "sys"])
    writer.writerow(
        [f"How do I {t18[0]}?", f"{t18[1]}\nMIN is marked inside the kettle.", SYSTEM]
    )  # lines 2-3
    writer.writerow([f"HOW DO I {t16[0].upper()}", t16[1].lower() + "!!", SYSTEM])  # line 4
    writer.writerow([f"How do I {t19[0]}?", t19[1], ""])  # line 5
    table = (
        "\ufeff".encode() + buf.getvalue().encode("utf-8") + b'"kettle question \xfe\xfe","kettle answer",\n'
    )
    EXPECTED.update(
        {
            ("faq.csv", 2): "kept",
            ("faq.csv", 4): "dropped:exact_duplicate",
            ("faq.csv", 5): "kept",
            ("faq.csv", 6): "fixed:utf8_repaired",
        }
    )
    (root / "faq.csv").write_bytes(table)

    # Alpaca JSONL.
    alpaca = [
        {"instruction": f"Explain how to {TOPICS[20][0]}.", "input": "", "output": TOPICS[20][1]},
        {
            "instruction": "Answer the customer's kettle question.",
            "input": TOPICS[21][0],
            "output": TOPICS[21][1],
        },
        {"instruction": "Say hi about the kettle", "input": "", "output": ""},
    ]
    EXPECTED.update(
        {("alpaca.jsonl", 1): "kept", ("alpaca.jsonl", 2): "kept", ("alpaca.jsonl", 3): "dropped:empty_turn"}
    )
    (root / "alpaca.jsonl").write_text("".join(json.dumps(r) + "\n" for r in alpaca), encoding="utf-8")
    return {p.name: p for p in root.iterdir() if p.is_file() and p.suffix != ".py"}


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
