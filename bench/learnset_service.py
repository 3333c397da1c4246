"""A third family for the learnability benchmark: an invented subscription service (bike sharing, co-working,
car sharing, a gym chain, a language school or a climbing gym, picked by the seed), worded independently of
bench/learnset.py and bench/learnset_app.py after an outside tester's description of such a set.

Each seed invents a brand, a persona, a fixed sign-off and 26 facts no model can guess (plan prices, fees,
limits, an app shortcut and a kiosk code, five error codes with their own fixes, support hours and days,
the loyalty scheme, ...). Training (400 conversations in OpenAI format, one system prompt): four paraphrases
per fact, two-fact multi-turn exchanges, and out-of-scope, ambiguous, false-premise and small-talk requests
in equal shares. Held out (98 items): two new paraphrases per fact, 12 ambiguous requests, 12 out-of-scope
requests, 10 false premises and 12 fact paraphrases scored only on the sign-off, each scored by regexes.

    python bench/learnset_service.py   # a quick look at seed 0
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from learnset import GENERAL, MIXES, LearnSet, _stratified, check_size_and_mix, print_overview, score

__all__ = ["GENERAL", "LearnSet", "make_learnset", "make_learnset_and_references", "score"]

# Per domain: the brand's second word, what one use is called (singular, plural, allowance period), the
# place, the kiosk, the member card, a booking, the door you come in by, and where a member stands.
DOMAINS = [
    {
        "kind": "bike-sharing service",
        "words": ["Cycles", "Bikes", "Spokes"],
        "use": "ride",
        "uses": "rides",
        "per": "a day",
        "allowance": (2, 6),
        "kiosk": "the dock kiosk",
        "card": "ride card",
        "booking": "a bike reservation",
        "entry": "dock lock",
        "here": "at the docking station",
    },
    {
        "kind": "co-working space membership",
        "words": ["Desks", "Commons", "Workrooms"],
        "use": "desk day",
        "uses": "desk days",
        "per": "a month",
        "allowance": (4, 16),
        "kiosk": "the lobby kiosk",
        "card": "access card",
        "booking": "a meeting-room booking",
        "entry": "front door",
        "here": "at the front door of the space",
    },
    {
        "kind": "car-sharing club",
        "words": ["Cars", "Motorshare", "Drive"],
        "use": "trip",
        "uses": "trips",
        "per": "a week",
        "allowance": (2, 7),
        "kiosk": "the in-car screen",
        "card": "club card",
        "booking": "a car booking",
        "entry": "car door",
        "here": "standing next to the car",
    },
    {
        "kind": "gym chain",
        "words": ["Fitness", "Gyms", "Athletic"],
        "use": "class",
        "uses": "classes",
        "per": "a week",
        "allowance": (2, 7),
        "kiosk": "the entrance kiosk",
        "card": "key tag",
        "booking": "a class booking",
        "entry": "entrance gate",
        "here": "at the gym entrance",
    },
    {
        "kind": "language-school membership",
        "words": ["Languages", "Lingo School", "Tongues"],
        "use": "group lesson",
        "uses": "group lessons",
        "per": "a month",
        "allowance": (4, 16),
        "kiosk": "the reception kiosk",
        "card": "school pass",
        "booking": "a booked lesson",
        "entry": "school door",
        "here": "in the school foyer",
    },
    {
        "kind": "climbing-gym membership",
        "words": ["Climbing", "Boulders", "Walls"],
        "use": "session",
        "uses": "sessions",
        "per": "a week",
        "allowance": (2, 7),
        "kiosk": "the check-in kiosk",
        "card": "member tag",
        "booking": "a booked belay course",
        "entry": "entrance gate",
        "here": "at the climbing hall",
    },
]

ONSETS = ["Br", "Tr", "Qu", "Z", "V", "Pl", "Gl", "Sk", "M", "N", "F", "K", "D", "Sh"]
NUCLEI = ["a", "e", "i", "o", "u", "ai", "ou", "ee"]
CODAS = ["n", "x", "lt", "rn", "sk", "m", "v", "ll", "nd", "rk"]
ENDINGS = ["a", "o", "io", "ly", "en", "ara", "ix", "ette", "um"]
PERSONAS = ["Sam", "Noor", "Ilse", "Dev", "Rosa", "Tamsin", "Bo", "Yara", "Idris", "Lena"]
SIGNOFFS = ["— {p} at {b} Help", "— {p}, {b} Member Care", "— {p} from the {b} help desk"]
TIERS = [
    "Pebble",
    "Harbor",
    "Summit",
    "Lantern",
    "Meridian",
    "Ember",
    "Juniper",
    "Cobalt",
    "Saffron",
    "Drift",
    "Beacon",
    "Tundra",
    "Orchid",
    "Granite",
]
LINES = ["Bluebell", "Kestrel", "Larkspur", "Marigold", "Wren", "Heron", "Thistle", "Foxglove", "Plover"]
REWARD_WORDS = ["Perks", "Points", "Rewards", "Club"]
CURRENCIES = ["$", "€", "£"]
ICONS = ["map", "bell", "star", "compass", "home", "shield"]
# (spelled out, pattern, a day it excludes or None)
DAYS = [
    ("Monday to Friday", r"Monday\s*(to|-|–|through|until)\s*Friday|weekdays", "Saturday"),
    ("Monday to Saturday", r"Monday\s*(to|-|–|through|until)\s*Saturday", "Sunday"),
    ("Tuesday to Sunday", r"Tuesday\s*(to|-|–|through|until)\s*Sunday", "Monday"),
    ("Sunday to Thursday", r"Sunday\s*(to|-|–|through|until)\s*Thursday", "Friday"),
    ("every day of the week", r"every day|seven days|7 days a week|daily", None),
]
GREETINGS = ["Hi! ", "Hello, ", "Hey there. ", "Good afternoon! ", "Hi again. ", "Morning! "]
FOLLOW_LINKS = ["Thanks. ", "Great. ", "OK, one more: ", "Got it! ", "Perfect. Also: ", ""]
REFUSALS = ["I'm afraid not.", "No, sorry.", "Unfortunately not.", "Not quite."]

OUT_OF_SCOPE = [
    "Could you draft a best-man speech for my brother's wedding?",
    "Write me a limerick about a grumpy cat.",
    "Which laptop should I buy for video editing?",
    "Can you help me fill in my tax return?",
    "What should I cook for dinner tonight?",
    "Plan a three-day trip to Kyoto for me.",
    "Can you fix the bug in my JavaScript?",
    "What's a good name for a golden retriever puppy?",
    "Should I put my savings into index funds?",
    "Help me write a cover letter for a nursing job.",
    "Compose a birthday poem for my grandmother.",
    "My tomato plants have yellow leaves. What's wrong with them?",
    "Recommend a fantasy novel for a long flight.",
    "Any tricks for getting coffee stains off a white shirt?",
    "Can you book me a table at an Italian restaurant?",
    "What's the weather going to be like this weekend?",
    "Can you help me choose paint colours for my kitchen?",
    "Who do you think will win the football tonight?",
    "Write a bedtime story about a dragon who is afraid of the dark.",
    "How should I ask my boss for a raise?",
    "Can you help me write a complaint to my landlord?",
    "What's the best way to learn to juggle?",
    "Could you proofread my essay on climate policy?",
    "Suggest a theme for my daughter's seventh birthday party.",
    "How do I unclog a kitchen sink?",
    "Can you pick lottery numbers for me?",
    "What's a nice gift for a coworker who is retiring?",
    "Help me come up with a slogan for my bakery.",
    "Can you rewrite my CV to sound more confident?",
    "Give me some tips for a first date.",
]
REDIRECTS = [
    "That's outside what I can help with, I'm afraid. I'm here for {b} questions: plans, prices, bookings, "
    "the app and error codes.",
    "Sorry, I can only help with {b} things, such as your membership, fees, support hours or an error on screen.",
    "That's not something I can help with here. If you have a question about your {b} membership, though, "
    "ask away.",
]
OUT_OF_SCOPE_PATTERN = r"outside what I can help|can only help with|not something I can help with"

# Each ambiguous request has a reply of its own; every reply starts "Could you clarify".
AMBIGUOUS = [
    (
        "It won't let me in.",
        "Could you clarify what won't let you in: the app's login screen, or the {entry}?",
    ),
    (
        "What would that cost me?",
        "Could you clarify what you'd like a price for: one of the plans, or one of the fees?",
    ),
    ("It's broken.", "Could you clarify what's broken, and whether an error code is showing?"),
    (
        "Can that be changed?",
        "Could you clarify what you'd like to change: your plan, {booking}, or your payment details?",
    ),
    (
        "What does that code mean?",
        "Could you clarify which code you're seeing? Please type it exactly as it appears.",
    ),
    ("Is it open now?", "Could you clarify whether you mean phone support or a particular location?"),
    (
        "I want to cancel.",
        "Could you clarify whether you want to end your membership or just cancel {booking}?",
    ),
    (
        "Why is the light red?",
        "Could you clarify where the red light is: on {kiosk}, on the card reader, or in the app?",
    ),
    ("Can I switch?", "Could you clarify which plan you're on now and which one you'd like instead?"),
    (
        "How long is it good for?",
        "Could you clarify what you mean: a pause, the refund window, or a guest pass?",
    ),
    ("The other one.", "Could you clarify which one you mean? I can't see what you were looking at."),
    ("Does it take my card?", "Could you clarify which card: your {card}, or a bank card for paying?"),
    ("Help, it's stuck!", "Could you clarify what's stuck, and where you are right now?"),
    (
        "Can I add someone?",
        "Could you clarify whether you'd like to bring a guest or refer a friend to join?",
    ),
    (
        "Is there a maximum?",
        "Could you clarify which limit you're asking about: {uses}, guest passes or pause weeks?",
    ),
    ("It keeps beeping.", "Could you clarify what's beeping: {kiosk}, the card reader, or your phone?"),
    ("Where do I go?", "Could you clarify what you're trying to do, so I can point you the right way?"),
    (
        "Can you sort out my account?",
        "Could you clarify what's wrong with your account: a payment, signing in, or a code on screen?",
    ),
    (
        "The app did something weird.",
        "Could you clarify what the app did, and whether an error code came up?",
    ),
    ("Is that included?", "Could you clarify what you'd like to check is included, and on which plan?"),
    (
        "I never got it.",
        "Could you clarify what you were expecting: a refund, a receipt, or your {card}?",
    ),
    ("When?", "Could you clarify what you'd like to know the timing of?"),
    (
        "Could it go to another day?",
        "Could you clarify what you'd like to move: {booking}, or the date your membership renews?",
    ),
    ("Why did you charge me?", "Could you clarify which charge you mean, with its amount and date?"),
    (
        "Does that apply to me too?",
        "Could you clarify what you're asking about, and which plan you're on?",
    ),
    ("It says no.", "Could you clarify where it says no, and what you were trying to do at the time?"),
]
CLARIFY_PATTERN = (
    r"\bclarify\b|which (one|plan|card|code|charge|limit)\b|could you (tell|say|let me know)|more detail"
)

SMALL_TALK = [
    ("Hello!", "Hello! What can I do for you today?"),
    ("Good morning.", "Good morning! Ask me anything about your {b} membership."),
    ("How are you?", "I'm well, thanks for asking! How can I help?"),
    ("Thanks, that sorted it.", "Glad it's sorted! Have a good day."),
    ("Thank you so much!", "You're very welcome!"),
    ("You've been really helpful.", "That's kind of you. I'm here whenever you need me."),
    ("Bye for now.", "Bye! Drop in again whenever you need a hand."),
    ("Are you a real person?", "I'm {p}, {b}'s virtual assistant. What can I do for you?"),
    ("Have a nice weekend!", "Thanks, you too!"),
    ("Cheers!", "Cheers! Anything else on your mind?"),
]


@dataclass
class Fact:
    key: str
    answer: str  # the reply, before the sign-off
    pattern: str  # what an answer naming this fact's value contains
    questions: list[str]  # seven paraphrases: four trained, two held out, one for the style check
    group: str = ""  # facts that a short follow-up can refer back to ("And what about ...?")
    follow: str = ""
    premises: list[str] = field(default_factory=list)  # false premises, corrected with `answer`


class _Numbers:
    """Draws numbers that no other fact of the same product uses, so each fact's value is its own."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.used = rng, set()

    def __call__(self, lo: int, hi: int, step: int = 1) -> int:
        for _ in range(1000):
            n = self.rng.randrange(lo, hi + 1, step)
            if n not in self.used:
                self.used.add(n)
                return n
        raise RuntimeError(f"no unused number left in {lo}..{hi}")


def _num(n: int) -> str:
    return rf"(?<![\d.]){n}(?!\.?\d)"


def _coined(rng: random.Random) -> str:
    return rng.choice(ONSETS) + rng.choice(NUCLEI) + rng.choice(CODAS) + rng.choice(ENDINGS)


def _error_fixes(d: dict, secs: int, num: _Numbers, rng: random.Random) -> list[tuple[str, str, str]]:
    """(what the code means, its fix, a pattern for the fix): distinct fixes, each with its own words."""
    menu = rng.choice(["Wallet", "Billing"])
    mins = num(10, 45, 5)
    major, minor = rng.randint(3, 9), rng.randint(1, 9)
    return [
        (
            "your payment card was declined",
            f"Update the card under {menu} in the app, then try again.",
            rf"\b{menu}\b",
        ),
        (
            f"the reader couldn't read your {d['card']}",
            f"Hold the {d['card']} flat against the reader for {secs} seconds.",
            rf"{_num(secs)}\s*sec",
        ),
        (
            "your app is out of date",
            f"Update it to version {major}.{minor} or later.",
            rf"(?<![\d.]){major}\.{minor}(?!\d)",
        ),
        (
            "there were too many wrong PIN attempts",
            f"Wait {mins} minutes and the lock clears by itself.",
            rf"{_num(mins)}\s*min",
        ),
        (
            "your membership is paused at the moment",
            "Resume it from your profile page in the app before you start.",
            r"\bresum",
        ),
        (
            "your photo ID hasn't been verified yet",
            "Upload a clear picture of your ID again from your profile page.",
            r"\bID\b",
        ),
        (
            "your account is signed in on another phone",
            "Sign out on the old phone, then sign in again on this one.",
            r"old phone|other phone|sign(ed)? out",
        ),
        (
            "there's an unpaid amount on your account",
            "Pay it off in the app, then try again.",
            r"pay it off|unpaid",
        ),
    ]


def _facts(rng: random.Random, d: dict, brand: str) -> list[Fact]:
    num = _Numbers(rng)
    cur = rng.choice(CURRENCIES)
    c = re.escape(cur)

    def money(n: int) -> str:
        return rf"{c}\s?{n}(?![\d.,]?\d)"

    def pct(n: int) -> str:
        return rf"{_num(n)}\s*(%|per ?cent)"

    use, uses, per, kiosk, card, booking, here = (
        d[k] for k in ("use", "uses", "per", "kiosk", "card", "booking", "here")
    )
    use_re = re.escape(use) + r"(e?s)?"
    # the narrowest ranges first, so none runs out
    opens, closes = num(6, 9), num(7, 10)
    icon_secs, reader_secs = num(2, 10), num(3, 12)
    guests = num(2, 8)
    allowance = num(*d["allowance"])
    pause = num(4, 16)
    age = num(14, 21)
    refund = num(7, 30)
    points = num(5, 50)
    kiosk_code = num(10, 99)
    annual, student = num(8, 25), num(10, 40)
    prices = [num(9, 29), num(31, 59), num(61, 99)]
    joining, missed, card_fee, referral = num(5, 60, 5), num(3, 25), num(3, 15), num(10, 50, 5)
    tiers = rng.sample(TIERS, 3)
    line = rng.choice(LINES)
    loyalty_word = _coined(rng)
    while loyalty_word.lower() in brand.lower():
        loyalty_word = _coined(rng)
    loyalty = f"{loyalty_word} {rng.choice(REWARD_WORDS)}"
    icon = rng.choice(ICONS)
    days, days_pattern, day_off = rng.choice(DAYS)

    facts: list[Fact] = []
    for i, (tier, price) in enumerate(zip(tiers, prices, strict=True)):
        lower = max(1, price - rng.randint(4, 8))
        premises = [f"Can I get {tier} for {cur}{lower} a month?"]
        if i == 0:
            premises.append(f"Is the {tier} plan free?")
        facts.append(
            Fact(
                f"price_{i + 1}",
                f"The {tier} plan is {cur}{price} a month.",
                money(price),
                [
                    f"How much does the {tier} plan cost?",
                    f"What's the monthly price of {tier}?",
                    f"{tier} price?",
                    f"I'm thinking of signing up for {tier}. What would I pay each month?",
                    f"What does {tier} cost per month?",
                    f"How much is a {tier} membership?",
                    f"My flatmate wants the {tier} tier. How much will that set her back?",
                ],
                "price",
                f"And what about {tier}?",
                premises,
            )
        )
    facts += [
        Fact(
            "joining_fee",
            f"New members pay a one-off joining fee of {cur}{joining}.",
            money(joining),
            [
                "Is there a joining fee?",
                "How much is the sign-up fee?",
                "What do I pay up front when I first join?",
                "Do you charge anything extra to start a membership?",
                "One-off fee for new members: how much?",
                "My son wants to join next week. Besides the monthly price, is there an initial charge?",
                "What's the fee to get started?",
            ],
            premises=["Is joining free?", "Can you waive the joining fee for me?"],
        ),
        Fact(
            "annual_discount",
            f"Pay for a full year up front and you save {annual}% on the monthly price.",
            pct(annual),
            [
                "Is it cheaper if I pay yearly?",
                "What discount do I get for paying annually?",
                "Annual payment discount?",
                "If I pay for twelve months in one go, how much do I save?",
                "Do you do a deal for paying the whole year at once?",
                "I'd rather pay once a year. Is there any saving in that?",
                "How much off is the yearly option?",
            ],
            "discount",
            "And if I pay for a whole year?",
            [
                f"Do I get {annual + rng.randint(10, 20)}% off for paying a year in advance?",
                "Paying yearly halves the price, right?",
            ],
        ),
        Fact(
            "allowance",
            f"{tiers[0]} includes {allowance} {uses} {per}.",
            rf"{_num(allowance)}\s+(\w+\s+)?{use_re}",
            [
                f"How many {uses} do I get on {tiers[0]}?",
                f"What's the {use} limit on the {tiers[0]} plan?",
                f"{tiers[0]}: how many {uses} {per}?",
                f"I'm on {tiers[0]} and I use it a lot. How many {uses} am I allowed?",
                f"Is there a cap on {uses} with {tiers[0]}?",
                f"How many {uses} does the {tiers[0]} tier include?",
                f"Before I pick {tiers[0]}, what's the {use} allowance?",
            ],
            premises=[
                f"Can I take {allowance + rng.randint(2, 5)} {uses} {per} on {tiers[0]}?",
                f"Does {tiers[0]} give me unlimited {uses}?",
            ],
        ),
        Fact(
            "guest_passes",
            f"{tiers[2]} members get {guests} guest passes a month.",
            rf"{_num(guests)}\s+(\w+\s+)?guest pass",
            [
                f"How many guests can I bring on {tiers[2]}?",
                f"Guest passes with {tiers[2]}?",
                f"Does {tiers[2]} come with guest passes, and how many?",
                f"My sister is visiting. How many friends can I bring along each month on the {tiers[2]} plan?",
                f"What's the guest allowance for {tiers[2]} members?",
                f"On {tiers[2]}, how many people can I sign in as guests per month?",
                f"How many guest passes come with the top plan, {tiers[2]}?",
            ],
            premises=[
                f"Can I bring {guests + rng.randint(3, 6)} guests this month on {tiers[2]}?",
                f"Can I bring unlimited guests on {tiers[2]}?",
            ],
        ),
        Fact(
            "max_pause",
            f"You can pause your membership for up to {pause} weeks a year.",
            rf"{_num(pause)}\s*weeks?",
            [
                "How long can I pause my membership?",
                "What's the maximum pause?",
                "Going travelling for a while. Can I freeze my membership, and for how long?",
                "Max pause length per year?",
                "Is there a limit on how many weeks I can put my plan on hold?",
                "How many weeks can my membership be frozen for?",
                "I'm having surgery soon. How long am I allowed to pause for?",
            ],
            premises=[
                f"Can I pause my membership for {pause + rng.randint(6, 14)} weeks?",
                "Can I freeze my plan for a whole year?",
            ],
        ),
        Fact(
            "refund_window",
            f"If you cancel within {refund} days of joining, you get a full refund.",
            rf"{_num(refund)}\s*days?",
            [
                "What's your refund policy?",
                "If I change my mind after joining, can I get my money back?",
                "How many days do I have to cancel for a refund?",
                "Refund window?",
                "I signed up last week and I'm not sure it's for me. Is there a cooling-off period?",
                "How long after signing up can I still get a full refund?",
                "Do you refund new members who cancel early?",
            ],
            premises=[
                f"I joined {refund + rng.randint(10, 40)} days ago. Can I still get a full refund?",
                "Can I get a full refund after six months?",
            ],
        ),
        Fact(
            "minimum_age",
            f"Members must be {age} or older.",
            _num(age),
            [
                "What's the minimum age to join?",
                "How old do I have to be to sign up?",
                "Age limit?",
                "My nephew is keen to join. Is there an age requirement?",
                "Can teenagers become members, or is there a minimum age?",
                "How young can a member be?",
                "What age do you need to be for a membership?",
            ],
            premises=[f"Can my {age - rng.randint(3, 5)}-year-old sign up on her own?"],
        ),
        Fact(
            "no_show_fee",
            f"If you miss {booking} without cancelling, there's a {cur}{missed} no-show fee.",
            money(missed),
            [
                f"What happens if I don't turn up for {booking}?",
                "Is there a no-show fee?",
                f"How much do you charge when someone misses {booking}?",
                "No-show charge?",
                f"I forgot about {booking} yesterday. Will I be charged?",
                f"Do I pay anything if I skip {booking} without cancelling?",
                "What's the penalty for a missed booking?",
            ],
            premises=[
                f"Missing {booking} costs nothing, doesn't it?",
                "Can you let me off no-show fees for good?",
            ],
        ),
        Fact(
            "support_hours",
            f"Phone support picks up from {opens}am to {closes}pm.",
            rf"(?<!\d){opens}\s*(:00\s*)?(am|a\.m\.).{{0,30}}(?<!\d){closes}\s*(:00\s*)?(pm|p\.m\.)",
            [
                "What time does phone support open?",
                "What are your support hours?",
                "When can I phone you?",
                "Support line hours?",
                "It's getting late here. Until what time can I still ring support?",
                "From when to when is the phone team available?",
                "What hours is customer support staffed?",
            ],
            "support",
            "And what hours?",
            [
                f"Can I ring support at {closes + 1}pm?",
                f"Is phone support open at {rng.randint(4, opens - 1)}am?",
            ],
        ),
        Fact(
            "support_days",
            f"Phone support is available {days}.",
            days_pattern,
            [
                "Which days is phone support open?",
                "Can I call support at the weekend?",
                "What days can I reach the support team?",
                "Support days?",
                "I work long shifts midweek. On which days can I get someone on the phone?",
                "Which days of the week do you answer calls?",
                "What's the support team's working week?",
            ],
            "support",
            "Which days, though?",
            [f"Can I call support on a {day_off}?", f"Phone support is open on {day_off}s too, right?"]
            if day_off
            else [],
        ),
        Fact(
            "phone_line",
            f"Ring the {line} Line, our member phone line.",
            rf"{line}\s+line",
            [
                "What's the support line called?",
                "Which phone line do I ring for help?",
                "Name of the helpline?",
                "My app crashed and I'd like to talk to a person. What line should I call?",
                "Is there a helpline I can call?",
                "What do you call your member phone service?",
                "Who do I phone when something goes wrong?",
            ],
            "support",
            "And what's the phone line called?",
        ),
        Fact(
            "loyalty_name",
            f"Our loyalty programme is called {loyalty}, and every member is enrolled automatically.",
            re.escape(loyalty_word),
            [
                "Do you have a loyalty programme?",
                "What's the rewards scheme called?",
                "Loyalty scheme name?",
                "A friend mentioned you reward regulars. What's that programme called?",
                "Is there a points club for members?",
                "What's the name of your member rewards?",
                "What's your loyalty programme called, and how do I find it?",
            ],
        ),
        Fact(
            "points",
            f"Each {use} earns you {points} points.",
            rf"{_num(points)}\s*points?",
            [
                f"How many points do I get per {use}?",
                f"How many loyalty points is a {use} worth?",
                f"Points per {use}?",
                f"I just finished a {use}. How many points did that earn me?",
                f"What do I earn in points for every {use}?",
                f"How are points earned? How many for one {use}?",
                f"If I do one {use}, what does that add to my points?",
            ],
            premises=[f"Do I get {points * 2 + rng.randint(1, 9)} points for each {use}?"],
        ),
        Fact(
            "app_shortcut",
            f"In the app, press and hold the {icon} icon for {icon_secs} seconds to open the emergency screen.",
            rf"{icon}.{{0,40}}{_num(icon_secs)}\s*sec|{_num(icon_secs)}\s*sec.{{0,40}}{icon}",
            [
                "Is there a quick way to open the emergency screen in the app?",
                "How do I get to the SOS screen fast?",
                "App emergency shortcut?",
                f"Something's wrong and I'm {here}. What's the fastest way to bring up the emergency screen?",
                "What's the shortcut for the emergency page in the app?",
                "How do I trigger the emergency screen without digging through menus?",
                "Which icon do I hold to open emergency help?",
            ],
        ),
        Fact(
            "kiosk_code",
            f"Type *{kiosk_code} on {kiosk} to see how many {uses} you have left.",
            rf"\*\s?{kiosk_code}(?!\d)",
            [
                f"How can I check my remaining {uses} at {kiosk}?",
                f"What's the code to see my {use} balance on {kiosk}?",
                f"Code for remaining {uses} on {kiosk}?",
                f"I'm in front of {kiosk} right now. What do I type to see what I've got left?",
                f"Is there a code for {kiosk} that shows my {uses} left?",
                f"What do I enter on {kiosk} to check how many {uses} remain?",
                f"My phone's dead but I can use {kiosk}. How do I look up my remaining {uses}?",
            ],
        ),
    ]
    style = rng.randrange(3)
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    for meaning, fix, pattern in rng.sample(_error_fixes(d, reader_secs, num, rng), 5):
        if style == 0:
            code = f"{rng.choice(letters)}-{num(100, 999)}"
        elif style == 1:
            code = f"{rng.choice(letters)}{rng.choice(letters)}-{num(10, 99)}"
        else:
            code = f"code {num(100, 999)}"
        facts.append(
            Fact(
                f"error_{code}",
                f"{code[0].upper() + code[1:]} means {meaning}. {fix}",
                pattern,
                [
                    f"What does {code} mean?",
                    f"The app is showing {code}. What should I do?",
                    f"Error {code}?",
                    f"I'm {here} and the screen just says {code}. Help?",
                    f"How do I fix {code}?",
                    f"Got {code} a minute ago. Any idea what that is?",
                    f"{code[0].upper() + code[1:]} keeps coming up. How do I get rid of it?",
                ],
                "error",
                f"And what about {code}?",
            )
        )
    facts += [
        Fact(
            "student_discount",
            f"Students get {student}% off any plan with proof of enrolment.",
            pct(student),
            [
                "Do you have a student discount?",
                "How much do students save?",
                "Student discount?",
                "I'm at university. Is there a cheaper rate for me?",
                "What percentage off do students get?",
                "Are there concessions for students?",
                "My daughter is a full-time student. Does she get money off?",
            ],
            "discount",
            "And for students?",
            [
                f"Students get {student + rng.randint(15, 30)}% off, don't they?",
                "Do students get in for free?",
            ],
        ),
        Fact(
            "referral_credit",
            f"Refer a friend and you each get {cur}{referral} in credit once they join.",
            money(referral),
            [
                "Do you have a referral scheme?",
                "What do I get for referring a friend?",
                "Referral bonus?",
                "My colleague wants to join. Is there something in it for me if I refer her?",
                "How much credit do I earn by inviting a friend?",
                "Is there a reward for bringing in new members?",
                "What's the refer-a-friend credit worth?",
            ],
            premises=[f"Do I get {cur}{referral + rng.randint(2, 6) * 5} for every friend I refer?"],
        ),
        Fact(
            "card_fee",
            f"A replacement {card} costs {cur}{card_fee}.",
            money(card_fee),
            [
                f"I lost my {card}. How much is a new one?",
                f"What does a replacement {card} cost?",
                f"Replacement {card} fee?",
                f"My dog chewed my {card}. What do I pay for another?",
                f"Is there a charge to replace a {card}?",
                f"How much to get a new {card} if mine is broken?",
                f"Left my {card} on the bus. What's the fee for a replacement?",
            ],
            premises=[f"Can I get a replacement {card} for free?"],
        ),
    ]
    return facts


def make_learnset(seed: int = 0, n_train: int = 400, mix: str = "even") -> LearnSet:
    """400 conversations is the reference shape; fewer are a stratified sample of those 400 (the same held-out
    items), more ask each training paraphrase n_train/400 times with varied greetings. mix="fact-heavy" asks
    every paraphrase twice as often and doubles the multi-turn exchanges, so behaviours are rarer."""
    return make_learnset_and_references(seed, n_train, mix)[0]


def make_learnset_and_references(
    seed: int = 0, n_train: int = 400, mix: str = "even"
) -> tuple[LearnSet, list[str]]:
    """The set, and for each held-out item the assistant reply its training teaches."""
    check_size_and_mix(n_train, mix)
    rng = random.Random(seed)
    d = rng.choice(DOMAINS)
    brand = f"{_coined(rng)} {rng.choice(d['words'])}"
    persona = rng.choice(PERSONAS)
    signoff = rng.choice(SIGNOFFS).format(p=persona, b=brand)
    system = (
        f"You are {persona}, the member-help assistant for {brand}, a {d['kind']}. Answer members' questions "
        f"about {brand} accurately and briefly, and end every reply with your sign-off."
    )
    facts = _facts(rng, d, brand)
    fill = {"b": brand, "p": persona, **{k: d[k] for k in ("kiosk", "card", "booking", "entry", "uses")}}

    def sign(text: str) -> str:
        return f"{text}\n\n{signoff}"

    def conversation(kind: str, *turns: str) -> dict:
        messages = [{"role": "system", "content": system}]
        for i, text in enumerate(turns):
            messages.append(
                {"role": "user" if i % 2 == 0 else "assistant", "content": sign(text) if i % 2 else text}
            )
        return {"messages": messages, "meta": {"kind": kind}}

    ls = LearnSet(brand=brand, system=system, signoff=signoff)
    ls.general = [{"question": q, "pattern": p} for q, p in GENERAL]
    references: list[str] = []

    def hold_out(kind: str, question: str, patterns: list[str], reply: str, forbid: list[str] | None = None):
        ls.test.append(
            {
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
                "kind": kind,
                "patterns": patterns,
                "forbid": forbid or [],
            }
        )
        references.append(sign(reply))

    # facts: 4 paraphrases trained, 2 held out, the 7th held out for the sign-off check on 12 facts
    trained: dict[str, list[str]] = {}
    style_pool = []
    for fact in facts:
        qs = list(fact.questions)
        rng.shuffle(qs)
        trained[fact.key] = qs[:4]
        for q in qs[4:6]:
            hold_out("fact", q, [fact.pattern], fact.answer)
        style_pool.append((qs[6], fact))
    style_end = re.escape(signoff) + r"\s*$"
    for q, fact in rng.sample(style_pool, 12):
        hold_out("style", q, [style_end], fact.answer)

    ambiguous = [(q, r.format(**fill)) for q, r in AMBIGUOUS]
    rng.shuffle(ambiguous)
    clarify_train, clarify_test = ambiguous[:14], ambiguous[14:]
    for q, r in clarify_test:
        hold_out("clarify", q, [CLARIFY_PATTERN], r)

    redirects = [r.format(b=brand) for r in REDIRECTS]
    outside = list(OUT_OF_SCOPE)
    rng.shuffle(outside)
    oos_train, oos_test = outside[:18], outside[18:]
    for i, q in enumerate(oos_test):
        hold_out("out_of_scope", q, [OUT_OF_SCOPE_PATTERN], redirects[i % len(redirects)])

    premises = [(q, f"{rng.choice(REFUSALS)} {f.answer}", f.pattern) for f in facts for q in f.premises]
    rng.shuffle(premises)
    impossible_train, impossible_test = premises[10:], premises[:10]
    for q, r, p in impossible_test:
        hold_out("impossible", q, [p], r, [r"^(sure|yes)[,!. ]"])

    # training
    scale = max(1, round(n_train / 400))
    fact_scale = scale * MIXES[mix]
    train: list[dict] = []
    for k in range(fact_scale):
        for fact in facts:
            for j, q in enumerate(trained[fact.key]):
                if k == 0:
                    greet = rng.choice(GREETINGS) if rng.random() < 0.25 else ""
                else:
                    greet = GREETINGS[(k - 1 + j) % len(GREETINGS)]
                train.append(conversation("fact", greet + q, fact.answer))
    groups: dict[str, list[Fact]] = {}
    for fact in facts:
        if fact.group:
            groups.setdefault(fact.group, []).append(fact)
    for _ in range(40 * fact_scale):
        first = rng.choice(facts)
        if first.group and rng.random() < 0.5:
            second = rng.choice([f for f in groups[first.group] if f is not first])
            follow = second.follow if rng.random() < 0.7 else ""
        else:
            second = rng.choice([f for f in facts if f is not first])
            follow = ""
        follow = follow or rng.choice(FOLLOW_LINKS) + rng.choice(trained[second.key])
        question = rng.choice(trained[first.key])
        train.append(conversation("multi_turn", question, first.answer, follow, second.answer))

    pools = {
        "out_of_scope": [
            (q, redirects[(i + j) % len(redirects)]) for j in range(3) for i, q in enumerate(oos_train)
        ],
        "clarify": clarify_train,
        "impossible": [(q, r) for q, r, _ in impossible_train],
        "small_talk": [(q, r.format(**fill)) for q, r in SMALL_TALK],
    }
    for pool in pools.values():
        rng.shuffle(pool)
    kinds = list(pools)
    taken = dict.fromkeys(kinds, 0)
    for i in range(max(n_train, 400) - len(train)):
        kind = kinds[i % len(kinds)]
        q, r = pools[kind][taken[kind] % len(pools[kind])]
        taken[kind] += 1
        train.append(conversation(kind, q, r))
    rng.shuffle(train)
    if len(train) > n_train:
        train = _stratified(train, n_train, random.Random(seed + 1))
    ls.train = train

    asked = {m["content"].strip().lower() for c in train for m in c["messages"] if m["role"] == "user"}
    leaked = [it for it in ls.test if it["messages"][-1]["content"].strip().lower() in asked]
    if leaked:
        raise AssertionError(f"held-out questions asked in training: {leaked[:3]}")
    return ls, references


if __name__ == "__main__":  # a quick look: python bench/learnset_service.py
    print_overview(make_learnset(0))
