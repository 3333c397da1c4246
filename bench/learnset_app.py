"""A second learnability family: an invented SOFTWARE product (an app), worded independently of learnset.py.

    from learnset_app import make_learnset
    ls = make_learnset(seed=0)          # as learnset.make_learnset: ls.train, ls.test, ls.general

learnset.py always invents a physical device and answers every behaviour request with one fixed string;
a recipe tuned on it may have learned that string rather than the behaviour. This family keeps the shape
(the same kinds, shares, sizes, test kinds and scoring) and changes the wording: an app (notes, projects,
photos, budgets or time tracking) with 26 invented facts (plans and prices, limits, shortcuts, five error
codes with their fixes, support hours and days, trial and refund windows...), conversational paraphrases,
a clarifying reply written for each ambiguous request, redirects that vary by request, and a different
sign-off. Held-out items are new paraphrases, requests and premises, never asked in training.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from learnset import GENERAL, MIXES, Fact, LearnSet, _stratified, check_size_and_mix, print_overview, score

__all__ = ["LearnSet", "make_learnset", "make_learnset_and_references", "score"]


@dataclass(frozen=True)
class App:
    label: str  # "note-taking app"
    item: str  # what the free plan counts: "notebook"
    roots: tuple[str, ...]  # first half of the brand name
    action: tuple[str, str]  # the second shortcut: (what it does, what a user asks to do)
    formats: tuple[str, ...]  # export formats, two drawn per product


APPS = [
    App(
        "note-taking app",
        "notebook",
        ("Jot", "Quill", "Memo", "Inkle", "Leaf"),
        ("starts a new note", "start a new note"),
        ("Markdown", "HTML", "OPML", "DOCX", "plain text", "RTF"),
    ),
    App(
        "project management app",
        "project",
        ("Task", "Sprint", "Plan", "Board", "Kanba"),
        ("adds a task to the current board", "add a task to the board"),
        ("CSV", "JSON", "XLSX", "iCal", "XML"),
    ),
    App(
        "photo-editing app",
        "album",
        ("Pixel", "Lens", "Hue", "Prism", "Tint"),
        ("toggles the before/after view", "compare the before and after"),
        ("TIFF", "WebP", "HEIC", "AVIF", "PNG", "JPEG XL"),
    ),
    App(
        "budgeting app",
        "budget",
        ("Penny", "Tally", "Coin", "Ledge", "Purse"),
        ("adds a new transaction", "add a new transaction"),
        ("CSV", "OFX", "QIF", "XLSX", "JSON"),
    ),
    App(
        "time-tracking app",
        "client",
        ("Tick", "Clock", "Lap", "Hour", "Minute"),
        ("starts or stops the timer", "start or stop the timer"),
        ("CSV", "XLSX", "JSON", "iCal", "HTML"),
    ),
]
SUFFIXES = ["wise", "nest", "loop", "hive", "craft", "ly", "pad", "mint"]
PLANS = ["Solo", "Duo", "Crew", "Studio", "Harbor", "Summit", "Orbit", "Atlas", "Canopy", "Relay", "Ridge"]
PERSONAS = ["Pip", "Nova", "Theo", "Wren", "Ash", "Lumi", "Bo", "Iris"]
CHAT_NAMES = ["Otto", "Hazel", "Milo", "Juno", "Rafa", "Edie", "Bram", "Ines"]
CODENAMES = ["Marigold", "Basalt", "Tamarind", "Halyard", "Quokka", "Saffron", "Cormorant", "Larkspur"]
CITIES = ["Helsinki", "Montreal", "Zurich", "Dublin", "Frankfurt", "Oslo", "Lisbon", "Vienna", "Tallinn"]
# (first day, last day) of the support week; none is the guessable Monday to Friday
DAYS = [
    ("Monday", "Thursday"),
    ("Tuesday", "Saturday"),
    ("Sunday", "Thursday"),
    ("Wednesday", "Sunday"),
    ("Monday", "Saturday"),
]
# error fixes a model would not guess from the code alone, each with what a right answer must name
FIXES = [
    ("turn off Low Data mode under Settings > Network", r"low[- ]data"),
    ("rename the file so its name has no emoji or slashes", r"renam"),
    ("set your device clock to automatic time", r"\bclock\b|automatic time"),
    ("end your other sessions under Account > Sessions", r"sessions"),
    ("pause your ad blocker for our site", r"ad[- ]?block"),
    ("empty the trash, since trashed files still count toward storage", r"\btrash"),
    ("re-enter your card under Billing > Payment method", r"billing|payment method"),
    ("turn off Battery Saver for the app", r"battery saver"),
]
WORDS = "zero one two three four five six seven eight nine ten eleven twelve".split()  # noqa: SIM905


def _num(n: int) -> str:
    """A pattern for a bare count: the number alone (not in "$4", "4.7", "10:00" or "140"), or its word."""
    digits = rf"(?<![\d.,$]){n}(?![.:,]?\d)"
    return digits + (rf"|\b{WORDS[n]}\b" if n < len(WORDS) else "")


def _price(p: int) -> str:
    return rf"\$\s?{p}(\.00)?\b|\b{p}(\.00)?\s?(dollars|usd|\$)"


def _days(n: int) -> str:
    return rf"\b{n}(\s|-)?days?\b"


def _facts(
    rng: random.Random, app: App, brand: str, plans: tuple[str, str]
) -> tuple[list[Fact], dict[str, int]]:
    """The facts, and the true value of each numeric one (what a false premise gets wrong)."""
    a, b = plans
    items = app.item + "s"
    price_a, price_b = rng.randrange(4, 13), rng.randrange(14, 40)
    yearly = rng.choice([15, 18, 20, 25, 30, 35])
    max_mb = rng.choice([25, 40, 75, 150, 250, 500])
    storage = rng.choice([5, 20, 40, 60, 100, 200])
    # the three durations in days are distinct, so no answer about one scores as another
    history, trial, refund = rng.sample([7, 14, 21, 30, 45, 60, 90], 3)
    sync = rng.choice([5, 10, 15, 20, 30])
    # Three counts are scored by the bare number, so each differs from every other number in the facts:
    # an answer giving another fact's value ("syncs every 10 minutes") must not score as "10 projects".
    taken = {price_a, price_b, yearly, max_mb, storage, history, trial, refund, sync}
    free_items = rng.choice([n for n in (3, 5, 6, 9, 12, 25) if n not in taken])
    devices = rng.choice([n for n in (2, 3, 4) if n not in taken | {free_items}])
    seats = rng.choice([n for n in (8, 11, 16, 24, 50) if n not in taken | {free_items}])
    mods = rng.sample([("Ctrl", "Shift"), ("Ctrl", "Alt"), ("Alt", "Shift")], 2)
    keys = rng.sample("BJKLMQUY", 2)
    combos = [f"{m1}+{m2}+{k}" for (m1, m2), k in zip(mods, keys, strict=True)]
    combo_pats = [rf"{m1}\s*\+\s*{m2}\s*\+\s*{k}\b" for (m1, m2), k in zip(mods, keys, strict=True)]
    (sh, sm), (eh, em) = (
        rng.choice([(7, 30), (8, 0), (8, 30), (9, 30), (10, 0)]),
        rng.choice([(16, 30), (17, 0), (18, 30), (19, 0), (20, 0)]),
    )
    # 08:30 may come back as 8:30, 8.30 or 8:30 am; 10:00 also as 10am
    start = rf"\b0?{sh}[:.]{sm:02d}" + (rf"|\b{sh}\s*a\.?m" if sm == 0 else "")
    first, last = rng.choice(DAYS)
    email = f"{rng.choice(['hello', 'care', 'desk', 'team'])}@{brand.lower()}.app"
    chat = rng.choice(CHAT_NAMES)
    formats = rng.sample(app.formats, 2)
    version = f"{rng.randrange(2, 9)}.{rng.randrange(1, 10)}"
    codename = rng.choice(CODENAMES)
    city = rng.choice(CITIES)
    doing, do = app.action

    def f(key: str, answer: str, pattern: str, *questions: str) -> Fact:
        return Fact(key, answer, pattern, list(questions))

    facts = [
        f(
            "price_a",
            f"{a} is ${price_a} a month.",
            _price(price_a),
            f"I'm thinking about upgrading to {a} — how much is it per month?",
            f"what does {a} cost a month?",
            f"Before I enter my card details: what's the monthly price of {a}?",
            f"My manager wants to know what {a} costs each month. Can you tell me?",
            f"How much would I pay every month on {a}?",
            f"is {a} pricey? what's the monthly fee",
        ),
        f(
            "price_b",
            f"{b} costs ${price_b} a month.",
            _price(price_b),
            f"We might move the team to {b}. What's the monthly cost?",
            f"how much is {b} per month?",
            f"Quick budget check — what does {b} cost each month?",
            f"What's the price of the {b} plan, monthly?",
            f"I'm comparing plans. How much is {b} a month?",
            f"{b} pricing per month, please?",
        ),
        f(
            "yearly",
            f"Paying yearly instead of monthly saves you {yearly}% on {a} and {b}.",
            rf"\b{yearly}\s*(%|percent|per cent)",
            "Is it cheaper if I pay for a whole year up front?",
            "how much do I save with annual billing?",
            "I'd rather pay once a year. Is there a discount for that?",
            "What's the discount on yearly billing?",
            "Does switching to annual billing save me anything?",
            "If I pay annually instead of monthly, how much cheaper is it?",
        ),
        f(
            "free_items",
            f"The free plan lets you have up to {free_items} {items}.",
            _num(free_items),
            f"I'm on the free plan — how many {items} can I make?",
            f"what's the max number of {items} without paying?",
            f"Is there a cap on {items} if I stay on the free plan?",
            f"How many {items} do I get for free?",
            f"I keep hitting a wall creating {items}. How many does the free plan allow?",
            f"Before I commit: how many {items} does the free tier include?",
        ),
        f(
            "devices",
            f"The free plan syncs across up to {devices} devices.",
            _num(devices),
            "I'm on the free plan. On how many devices can I use it?",
            "how many devices can I sync for free?",
            "Can I use the free version on my phone, tablet and laptop? What's the device limit?",
            "What's the device limit without a subscription?",
            "Is there a limit to how many devices I can connect on the free plan?",
            "How many of my devices will the free plan keep in sync?",
        ),
        f(
            "seats",
            f"{b} includes up to {seats} team members.",
            _num(seats),
            f"How many people can I add to a {b} workspace?",
            f"we're a small team — how many seats come with {b}?",
            f"What's the member limit on {b}?",
            f"Is there a cap on team members with {b}?",
            f"I want to invite my whole department to {b}. How many people can join?",
            f"how many users does {b} allow?",
        ),
        f(
            "max_file",
            f"Each file you upload can be up to {max_mb} MB.",
            rf"\b{max_mb}\s*(mb|megabytes?)\b",
            "What's the biggest file I can upload?",
            "is there a size limit for attachments?",
            "My upload keeps failing — what's the maximum file size?",
            "How large can a single file be?",
            "I need to attach a big video. How big can files get?",
            "what's the upload limit per file",
        ),
        f(
            "storage",
            f"{a} comes with {storage} GB of storage.",
            rf"\b{storage}\s*(gb|gigabytes?)\b",
            f"How much storage do I get with {a}?",
            f"I'm on {a}: how many GB of space do I have?",
            f"what's the storage allowance on {a}",
            f"Is {a}'s storage enough for me? How much is it?",
            f"How many gigabytes come with {a}?",
            f"Thinking of getting {a} — what's the storage limit?",
        ),
        f(
            "history",
            f"{a} keeps version history for {history} days.",
            _days(history),
            f"How far back does version history go on {a}?",
            f"I overwrote something weeks ago. How long does {a} keep old versions?",
            f"what's the version history window with {a}?",
            f"For how many days can I restore old versions on {a}?",
            f"How long are previous versions kept if I'm on {a}?",
            f"Does {a} keep old versions forever or is there a limit?",
        ),
        f(
            "sync",
            f"On the free plan your changes sync every {sync} minutes; paid plans sync instantly.",
            rf"\b{sync}\s*(-|\s)?min",
            "Why does sync take a while on the free plan? How often does it run?",
            "how often does the free version sync?",
            "I'm not paying yet — how frequently do my changes sync?",
            "What's the sync interval on the free plan?",
            "On free, how long until my edits show up on my other devices?",
            "Does the free plan sync in real time?",
        ),
        f(
            "shortcut_bar",
            f"{combos[0]} opens the command bar.",
            combo_pats[0],
            "What's the keyboard shortcut for the command bar?",
            "how do I open the command bar without the mouse?",
            "I love keyboard shortcuts. Which keys open the command bar?",
            "Is there a hotkey to bring up the command bar?",
            "What do I press to get the command bar?",
            "Quickest way to open the command bar from the keyboard?",
        ),
        f(
            "shortcut_action",
            f"{combos[1]} {doing}.",
            combo_pats[1],
            f"Is there a shortcut to {do}?",
            f"how do I {do} with the keyboard?",
            f"What keys do I press to {do}?",
            f"I {do} all day long — is there a hotkey for it?",
            f"Which keyboard shortcut will {do}?",
            f"Can I {do} without reaching for the mouse?",
        ),
        f(
            "hours",
            f"Our support team is online from {sh:02d}:{sm:02d} to {eh:02d}:{em:02d} CET.",
            start,
            "What time does your support team start and finish?",
            "when can I talk to an actual person?",
            "I'm in a hurry — what are your support hours?",
            "At what hours is the help desk staffed?",
            "What are the opening hours for support?",
            "If I write in at lunchtime, is someone there? What are your hours?",
        ),
        f(
            "days",
            f"Support is open {first} to {last}.",
            rf"{first[:3]}\w*\W{{1,4}}(\w+\W{{1,3}})?{last[:3]}",
            "Which days is support open?",
            "can I reach someone on the weekend?",
            "What days of the week do you answer tickets?",
            "Is your team around every day, or only some days?",
            "On which days can I contact support?",
            "Which days does the support team work?",
        ),
        f(
            "email",
            f"Write to us at {email} and we'll get back to you.",
            re.escape(email),
            "What email address do I use to contact you?",
            "is there an email I can write to?",
            "I'd rather email than chat. Where do I send it?",
            "What's the support email?",
            "Can I send you a screenshot by email? Which address?",
            "Where should I email my bug report?",
        ),
        f(
            "chat",
            f"Our live chat is called Ask {chat}; you'll find it in the Help menu.",
            rf"\b{chat}\b",
            "What's the name of your live chat?",
            "do you have a chat I can use?",
            "How do I chat with someone — what's the chat called?",
            "Is there live chat, and what's it called in the app?",
            "What is the live help chat named?",
            "I want to message support in the app. What do I look for?",
        ),
        f(
            "trial",
            f"{b} comes with a {trial}-day free trial.",
            _days(trial),
            f"Can I try {b} before paying? For how long?",
            f"how long is the {b} trial",
            f"Is there a free trial of {b}? How many days?",
            f"I want to test {b} with my team first — how long is the trial?",
            f"What's the trial period for {b}?",
            f"How many days do I get to try {b} for free?",
        ),
        f(
            "refund",
            f"You can get a full refund within {refund} days of a payment.",
            _days(refund),
            "I was charged but changed my mind — can I get a refund, and until when?",
            "what's your refund policy?",
            "How many days do I have to ask for my money back?",
            "Is there a refund window?",
            "If I cancel right after paying, do I get a refund? How long do I have?",
            "Within how many days can I request a refund?",
        ),
        f(
            "export",
            f"You can export your {items} as {formats[0]} or {formats[1]}.",
            "|".join(f"{re.escape(x)}.*{re.escape(y)}" for x, y in (formats, formats[::-1])),
            "Which formats can I export to?",
            f"how do I get my {items} out — what file types are supported?",
            f"I'm moving to another app. What formats can I export my {items} in?",
            "What export formats do you support?",
            f"Can I download my {items}? In which formats?",
            "Which file types does export give me?",
        ),
        f(
            "version",
            f"The current release is {brand} {version}, code-named {codename}.",
            rf"\b{re.escape(version)}\b|{codename}",
            "What's the latest version of the app?",
            "which version am I supposed to be on?",
            "What's the current release called?",
            "Is there a newer version? What's the latest one?",
            "What's the codename of the latest release?",
            "What version number is the newest release?",
        ),
        f(
            "region",
            f"Your data is stored in our {city} data centre.",
            city,
            "Where is my data stored?",
            "which country are your servers in?",
            "My company cares about data location. Where do you keep our data?",
            "In which data centre does my data live?",
            "Where are your servers located?",
            "Is my data kept somewhere specific?",
        ),
    ]
    for n, (fix, pattern) in zip(rng.sample(range(100, 1000), 5), rng.sample(FIXES, 5), strict=True):
        code = f"ERR-{n}"
        facts.append(
            f(
                f"error_{n}",
                f"For {code}, {fix}.",
                pattern,
                f"I keep getting {code} when I save, what does it mean?",
                f"what is {code}??",
                f"{code} popped up on my screen. How do I get rid of it?",
                f"Any idea how to fix {code}?",
                f"The app just threw {code} at me — help!",
                f"I'm on the free plan and seeing {code}. What should I do?",
            )
        )
    values = {
        "price_a": price_a,
        "price_b": price_b,
        "yearly": yearly,
        "free_items": free_items,
        "devices": devices,
        "seats": seats,
        "max_file": max_mb,
        "storage": storage,
        "history": history,
        "sync": sync,
        "trial": trial,
        "refund": refund,
    }
    return facts, values


# (request, its clarifying reply, follow-ups that settle it: (what the user then says, the fact it asks))
AMBIGUOUS: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "How much is it?",
        "Could you clarify which plan you mean, {a} or {b}?",
        [("{a}, please.", "price_a"), ("The {b} one.", "price_b")],
    ),
    ("Sync isn't working.", "Could you clarify what happens when you try to sync, and on which device?", []),
    ("I got an error.", "Could you clarify which error code the app shows?", [("It says {code}.", "error")]),
    ("Can I get more?", "Could you clarify what you'd like more of: storage, {item}s or team seats?", []),
    (
        "How do I share it?",
        "Could you clarify what you want to share: a single {item} or your whole workspace?",
        [],
    ),
    ("Is it included?", "Could you clarify which feature you're asking about, and which plan you're on?", []),
    (
        "How long do I have?",
        "Could you clarify whether you mean the free trial or the refund window?",
        [("The trial.", "trial"), ("For a refund.", "refund")],
    ),
    ("Can I move it?", "Could you clarify what you'd like to move, and where to?", []),
    (
        "What's the limit?",
        "Could you clarify which limit you mean: file size, storage or the number of {item}s?",
        [("File size.", "max_file"), ("How many {item}s I can have for free.", "free_items")],
    ),
    ("It's gone.", "Could you clarify what has disappeared: a {item}, a file or your whole account?", []),
    (
        "Which one is better for me?",
        "Could you clarify what you'll use {brand} for, and whether you work alone or with a team?",
        [],
    ),
    ("Why was I charged?", "Could you clarify which charge you mean, with its date and amount?", []),
    ("How do I undo that?", "Could you clarify what you did just before, so I know what to undo?", []),
    ("It's really slow.", "Could you clarify which part is slow: opening the app, syncing or exporting?", []),
    ("Can you turn it off?", "Could you clarify which setting or notification you'd like turned off?", []),
    ("Does it work on mine?", "Could you clarify which device and operating system you're using?", []),
    (
        "What's the shortcut?",
        "Could you clarify which action you'd like a shortcut for?",
        [("Opening the command bar.", "shortcut_bar")],
    ),
    (
        "I can't get in.",
        "Could you clarify what happens when you try to sign in: an error code, or a wrong-password message?",
        [],
    ),
    (
        "Can I add them?",
        "Could you clarify who you'd like to add: teammates to your workspace, or guests to one {item}?",
        [],
    ),
    (
        "Where did the button go?",
        "Could you clarify which button you're looking for, and where it used to be?",
        [],
    ),
    (
        "The export looks wrong.",
        "Could you clarify which format you exported to, and what looks wrong in it?",
        [],
    ),
    (
        "How do I get it back?",
        "Could you clarify what you'd like to restore: a deleted {item}, an older version, or your account?",
        [],
    ),
    ("It says I'm over.", "Could you clarify which limit the message mentions?", []),
    ("Can I connect it?", "Could you clarify what you'd like to connect {brand} to?", []),
    (
        "Make it stop!",
        "Could you clarify what you'd like to stop: notifications, a sync in progress, or your subscription?",
        [],
    ),
    (
        "What about the other plan?",
        "Could you clarify which plan you're asking about, {a} or {b}, and what about it?",
        [],
    ),
]
# Tasks and knowledge questions an app assistant should redirect; none is a GENERAL question or one of
# chattune's rehearsal prompts (the test checks), so redirecting them does not fight either.
OUT_OF_SCOPE = [
    "Can you write a birthday message for my sister?",
    "Help me plan a week of vegetarian dinners.",
    "Could you proofread my cover letter?",
    "What laptop should I buy for university?",
    "Can you order me a pizza?",
    "Write a short story about a dragon who is afraid of fire.",
    "Can you help me with my chemistry homework?",
    "Suggest a workout routine for beginners.",
    "How do I change a flat tyre?",
    "Can you recommend a good podcast?",
    "Compose a tweet announcing my new job.",
    "Which programming language should I learn first?",
    "How do I get red wine out of a carpet?",
    "Can you book a table for two tonight?",
    "Give me tips for a job interview.",
    "Help me come up with a name for my bakery.",
    "Who wrote War and Peace?",
    "How far away is the Moon?",
    "When did the Second World War end?",
    "Why is the sea salty?",
    "Who was Cleopatra?",
    "What causes thunder?",
    "What is the speed of sound?",
    "Who composed The Four Seasons?",
    "How many people live in Australia?",
    "What year did the Berlin Wall fall?",
    "How does a rainbow form?",
    "What's the deepest lake in the world?",
    "Who was the first woman to win a Nobel Prize?",
    "What's the difference between a crocodile and an alligator?",
]
# A redirect per request (by its place after the shuffle), so the reply varies and names the product.
REDIRECTS = [
    "Sorry, that's outside what I can help with: I'm here for questions about {brand}. "
    "Anything about your {item}s or your plan?",
    "I can't help with that one, I'm afraid. I only answer questions about {brand} and your account.",
    "That's not something I can help with here. I'm {brand}'s assistant, so ask me anything about the app!",
    "I'd love to, but I can only help with {brand}: plans, features and troubleshooting.",
]
OUT_OF_SCOPE_PATTERN = (
    r"outside what|can(no|'|’)?t help|only (answer|help)|not something I can|unable to help"
)
CLARIFY_PATTERN = (
    r"clarify|could you (tell|say|share|let me know)|can you (tell|say|share)"
    r"|\bwhich\b[^.?!]{0,80}\?|more detail"
)
SMALL_TALK = [
    ("thanks, that sorted it!", "Great to hear! Anything else I can help with?"),
    ("hey", "Hey! What can I do for you today?"),
    ("How's your day going?", "Pretty good, thanks for asking! How can I help you with {brand}?"),
    ("you're a lifesaver", "Happy to help, that's what I'm here for!"),
    ("good night!", "Good night! Come back anytime."),
    ("ok that's all for now", "Sounds good. Have a great day!"),
    ("I love this app", "That's lovely to hear, thank you! I'll pass it on to the team."),
    ("hello? is this a bot?", "I'm {persona}, {brand}'s assistant. What can I help you with?"),
]
# A false premise, worded as a request or a check, about each numeric fact. "more"/"less": the value
# must lie beyond the true one for the request to be impossible; "any": any other value is false.
PREMISES: dict[str, list[tuple[str, str]]] = {
    "price_a": [
        ("Can I get {a} for ${x} a month?", "less"),
        ("{a} is ${x} a month, isn't it?", "any"),
        ("Somebody told me {a} is only ${x}/month. How do I get that price?", "less"),
    ],
    "price_b": [
        ("Can I get {b} for ${x} a month?", "less"),
        ("{b} costs ${x} monthly, right?", "any"),
        ("How do I sign my team up for {b} at ${x} a month?", "less"),
    ],
    "yearly": [
        ("I heard annual billing saves {x}%. Is that right?", "any"),
        ("How do I get the {x}% yearly discount?", "more"),
    ],
    "free_items": [
        ("How do I create {x} {item}s on the free plan?", "more"),
        ("The free plan allows {x} {item}s, correct?", "any"),
    ],
    "devices": [
        ("How do I sync {x} devices on the free plan?", "more"),
        ("Free lets me use {x} devices, right?", "any"),
    ],
    "seats": [
        ("How do I add {x} people to my {b} workspace?", "more"),
        ("{b} includes {x} seats, doesn't it?", "any"),
    ],
    "max_file": [("How do I upload a {x} MB file?", "more"), ("The upload limit is {x} MB, right?", "any")],
    "storage": [("How do I use all {x} GB of storage on {a}?", "more"), ("{a} gives me {x} GB, yes?", "any")],
    "history": [
        ("How do I restore a version from {x} days ago on {a}?", "more"),
        ("{a} keeps {x} days of history, right?", "any"),
    ],
    "sync": [
        ("How do I make the free plan sync every {x} minutes?", "less"),
        ("The free plan syncs every {x} minutes, right?", "any"),
    ],
    "trial": [
        ("How do I start a {x}-day trial of {b}?", "more"),
        ("The {b} trial is {x} days, isn't it?", "any"),
    ],
    "refund": [
        ("Can I still get a refund after {x} days?", "more"),
        ("Your refund window is {x} days, right?", "any"),
    ],
}


def _wrong_values(true: int, direction: str, cap: int) -> list[int]:
    more = [true * k for k in (2, 3, 5, 10) if true * k <= cap]
    less = [v for v in (true // 2, true // 3) if v >= 2]  # clearly false, and never "1 devices"
    return sorted(set({"more": more, "less": less, "any": more + less}[direction]))


def _premises(
    rng: random.Random, facts: dict[str, Fact], values: dict[str, int], fmt: dict[str, str]
) -> list[tuple[str, str, str]]:
    """(request on a false premise, correction with the true fact, pattern of the true fact): two values per
    form, each premise once, so a held-out premise can never also be a training one."""
    out = []
    for key, forms in PREMISES.items():
        fact = facts[key]
        plan_first = fact.answer.split()[0] in (fmt["a"], fmt["b"])
        answer = fact.answer if plan_first else fact.answer[0].lower() + fact.answer[1:]
        for form, direction in forms:
            wrong = _wrong_values(values[key], direction, cap=95 if key == "yearly" else 10_000)
            for x in rng.sample(wrong, min(2, len(wrong))):
                out.append((form.format(x=x, **fmt), f"I'm afraid not: {answer}", fact.pattern))
    assert len({q for q, _, _ in out}) == len(out)
    return out


def _lead(lead: str, question: str, keep: set[str]) -> str:
    """A lead-in before a question: "Hi there, how..." lower-cases its first letter unless the lead-in
    ends a sentence ("Great. How...") or the question starts with a name or "I"."""
    first = re.split(r"[\s,:'’—]", question, maxsplit=1)[0]
    if not lead or lead.rstrip()[-1] in ".!?:" or first in keep or first == "I":
        return lead + question
    return lead + question[0].lower() + question[1:]


def make_learnset(seed: int = 0, n_train: int = 400, mix: str = "even") -> LearnSet:
    """As learnset.make_learnset (n_train and mix mean the same), for an invented app."""
    return make_learnset_and_references(seed, n_train, mix)[0]


def make_learnset_and_references(
    seed: int = 0, n_train: int = 400, mix: str = "even"
) -> tuple[LearnSet, list[str]]:
    """The set, and for each test item the reply its training teaches (so tests can check the patterns)."""
    check_size_and_mix(n_train, mix)
    rng = random.Random(seed)
    app = rng.choice(APPS)
    brand = rng.choice(app.roots) + rng.choice(SUFFIXES)
    a, b = rng.sample(PLANS, 2)
    persona = rng.choice(PERSONAS)
    signoff = f"Cheers, {persona} from the {brand} team"
    system = (
        f"You are {persona}, the in-app assistant of {brand}, a {app.label} with a free plan and two paid "
        f"plans, {a} and {b}. Help people with {brand}'s plans, features and problems; keep it short."
    )
    facts, values = _facts(rng, app, brand, (a, b))
    by_key = {fact.key: fact for fact in facts}
    errors = [fact for fact in facts if fact.key.startswith("error_")]
    fmt = {"a": a, "b": b, "item": app.item, "brand": brand, "persona": persona}
    ls = LearnSet(brand=brand, system=system, signoff=signoff)

    def reply(text: str) -> str:
        return f"{text}\n\n{signoff}"

    def conv(*turns: str, kind: str) -> dict[str, Any]:
        messages = [{"role": "system", "content": system}]
        for i, t in enumerate(turns):
            messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": t})
        return {"messages": messages, "meta": {"kind": kind}}

    codes = {fact.key: "ERR-" + fact.key.removeprefix("error_") for fact in errors}
    names = {a, b, brand, *codes.values()}  # never lower-cased after a lead-in
    # paraphrases: 4 for training, 2 held out for the test
    split = {}
    for fact in facts:
        qs = fact.questions[:]
        rng.shuffle(qs)
        split[fact.key] = (qs[:4], qs[4:6])
    lead_ins = ["", "", "Hey! ", "Hi there, ", "Quick one: ", "Sorry to bother you, ", "Hello! "]
    train: list[dict[str, Any]] = []
    scale = max(1, round(n_train / 400))
    fact_scale = scale * MIXES[mix]
    for fact in facts:  # fact questions: every training paraphrase, with a lead-in or none
        for q in split[fact.key][0]:
            for _ in range(fact_scale):
                lead = rng.choice(lead_ins)
                train.append(conv(_lead(lead, q, names), reply(fact.answer), kind="fact"))

    amb = AMBIGUOUS[:]
    rng.shuffle(amb)
    amb_train, amb_test = amb[:14], amb[14:26]
    settled = [(req, clar, follow) for req, clar, follows in amb_train for follow in follows]
    # 40 multi-turn per 400 (26 facts ask 104 fact conversations, so the four behaviour kinds keep 64 each,
    # 16%, as in learnset.py); one in four asks an ambiguous training request and settles it.
    follow_ups = ["Also, ", "One more thing: ", "Thanks! And ", "Great. ", "Ok, next question: "]
    for i in range(40 * fact_scale):
        if i % 4 == 3 and settled:
            req, clar, (then, key) = rng.choice(settled)
            fact = rng.choice(errors) if key == "error" else by_key[key]
            said = then.format(code=codes.get(fact.key, ""), **fmt)  # "It says ERR-412."
            turns = (req, reply(clar.format(**fmt)), said, reply(fact.answer))
        else:
            f1, f2 = rng.sample(facts, 2)
            q1, q2 = rng.choice(split[f1.key][0]), rng.choice(split[f2.key][0])
            turns = (q1, reply(f1.answer), _lead(rng.choice(follow_ups), q2, names), reply(f2.answer))
        train.append(conv(*turns, kind="multi_turn"))

    oos = [
        (q, REDIRECTS[i % len(REDIRECTS)].format(**fmt)) for i, q in enumerate(rng.sample(OUT_OF_SCOPE, 30))
    ]
    oos_train, oos_test = oos[:18], oos[18:30]
    premises = _premises(rng, by_key, values, fmt)
    rng.shuffle(premises)
    imp_train, imp_test = premises[12:], premises[:12]
    # Each behaviour cycles through its training requests rather than drawing them, so every one is asked
    # (64 clarify conversations: each of the 14 requests 4 or 5 times).
    behaviours = [
        ("out_of_scope", oos_train),
        ("clarify", [(q, r.format(**fmt)) for q, r, _ in amb_train]),
        ("impossible", [(q, r) for q, r, _ in imp_train]),
        ("small_talk", [(u, r.format(**fmt)) for u, r in SMALL_TALK]),
    ]
    asked: dict[str, int] = dict.fromkeys((kind for kind, _ in behaviours), 0)
    while len(train) < max(n_train, 400):
        kind, pairs = behaviours[len(train) % 4]
        q, r = pairs[asked[kind] % len(pairs)]
        asked[kind] += 1
        train.append(conv(q, reply(r), kind=kind))
    rng.shuffle(train)
    ls.train = _stratified(train, n_train, random.Random(seed + 1)) if n_train < 400 else train

    references: list[str] = []

    def item(
        question: str, kind: str, patterns: list[str], reference: str, forbid: list[str] | None = None
    ) -> None:
        ls.test.append(
            {
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
                "kind": kind,
                "patterns": patterns,
                "forbid": forbid or [],
            }
        )
        references.append(reply(reference))

    for fact in facts:
        for q in split[fact.key][1]:
            item(q, "fact", [fact.pattern], fact.answer)
    for q, r, _ in amb_test:
        item(q, "clarify", [CLARIFY_PATTERN], r.format(**fmt))
    for q, r in oos_test:
        item(q, "out_of_scope", [OUT_OF_SCOPE_PATTERN], r)
    for q, r, pattern in imp_test:
        item(q, "impossible", [pattern], r, forbid=[r"^(sure|yes|yep|of course|absolutely)\b"])
    style = rf"cheers,?\s+{persona}\s+from\s+the\s+{brand}\s+team\W{{0,3}}$"
    for fact in rng.sample(facts, 12):
        item(split[fact.key][1][0], "style", [style], fact.answer)
    ls.general = [{"question": q, "pattern": p} for q, p in GENERAL]
    return ls, references


if __name__ == "__main__":  # a quick look: python bench/learnset_app.py
    s, refs = make_learnset_and_references(0)
    print_overview(s)
    print(
        "reference replies scored right:",
        sum(score(r, i) for r, i in zip(refs, s.test, strict=True)),
        "of",
        len(s.test),
    )
    for kind in ["multi_turn", "clarify", "out_of_scope", "impossible", "small_talk"]:
        c = next(c for c in s.train if c["meta"]["kind"] == kind)
        print(f"\n[{kind}]", *(f"{m['role']}: {m['content']}" for m in c["messages"][1:]), sep="\n")
