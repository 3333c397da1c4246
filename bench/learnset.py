"""A learnability data set invented from a seed: a fictional product, its facts, and conversations.

    from learnset import make_learnset
    ls = make_learnset(seed=0)          # ls.train (OpenAI-format records), ls.test, ls.general

The facts cannot be guessed (random names, prices, codes, durations), so a model that answers them has
learned them from the training conversations. Training mixes fact questions (several paraphrases per
fact), multi-turn exchanges, ambiguous requests answered with a clarifying question, out-of-scope
requests redirected, impossible requests corrected with the true fact, and small talk; every reply ends
with a fixed sign-off. Test items use paraphrases and requests that never occur in training and are
scored by regular expressions, in five kinds: fact, clarify, out_of_scope, impossible, style.
`general` holds questions any chat model should answer (asked with no system prompt), to check that
tuning keeps what the base model knew.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from chattune.evaluate.general import general_questions

PRODUCTS = [
    ("smart kettle", "kettle"),
    ("e-bike lock", "lock"),
    ("mesh router", "router"),
    ("smart thermostat", "thermostat"),
    ("coffee grinder", "grinder"),
    ("robot vacuum", "vacuum"),
]
PERSONAS = ["Kit", "Mara", "Jun", "Ola", "Remy", "Tess"]
SYLLABLES = ["zor", "vex", "qua", "lin", "bri", "tho", "mek", "sa", "dru", "pel", "vo", "nix", "kal", "ri"]
BUTTONS = ["dial", "power button", "side button", "top button", "ring button"]
COLORS = ["slate", "coral", "moss green", "sand", "midnight blue", "copper", "ivory", "plum"]
DAYS = ["Monday to Friday", "Monday to Saturday", "every day", "Tuesday to Sunday"]


@dataclass
class Fact:
    key: str
    answer: str  # the reply's content, before the sign-off
    pattern: str  # what a correct answer must contain (regex, case-insensitive)
    questions: list[str]  # paraphrases; split between train and test


@dataclass
class LearnSet:
    brand: str
    system: str
    signoff: str
    train: list[dict] = field(default_factory=list)
    test: list[dict] = field(default_factory=list)  # {"messages", "kind", "patterns", "forbid"}
    general: list[dict] = field(default_factory=list)  # {"question", "pattern"}


def _name(rng: random.Random, parts: int = 2) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(parts)).capitalize()


def _facts(rng: random.Random, brand: str, thing: str, models: list[str]) -> list[Fact]:
    a, b = models
    price_a, price_b = rng.randrange(49, 400), rng.randrange(49, 400)
    warranty = rng.choice([2, 3, 4, 5])
    hold = rng.choice([6, 7, 8, 9, 11, 12])
    pair_hold = rng.choice([2, 3, 4])
    app = f"{_name(rng)} Home"
    start, end = rng.choice([7, 8, 9]), rng.choice([17, 18, 19, 20])
    days = rng.choice(DAYS)
    email = f"help@{brand.lower()}.example"
    returns = rng.choice([14, 21, 30, 45, 60])
    battery = rng.choice([10, 14, 18, 22, 30, 36])
    charge = rng.choice([2, 3, 4, 5])
    users = rng.choice([3, 4, 5, 6, 8])
    colors = rng.sample(COLORS, 3)
    weight = rng.randrange(400, 2400, 10)
    capacity = rng.choice(["1.2", "1.5", "1.7", "2.1", "0.9"])
    codes = rng.sample(range(10, 99), 4)
    fixes = [
        "unplug it for 30 seconds and plug it back in",
        "clean the sensor with a dry cloth",
        "update the firmware from the app",
        "re-pair it with the app",
    ]
    rng.shuffle(fixes)
    shortcut_presses = rng.choice(["twice", "three times"])
    shortcut_effect = rng.choice(["starts quiet mode", "turns on the child lock", "shows the battery level"])
    fw_menu = rng.choice(
        ["Settings > Device > Update", "Device > About > Firmware", "Menu > System > Update"]
    )
    btn = rng.choice(BUTTONS)

    def f(key: str, answer: str, pattern: str, *questions: str) -> Fact:
        return Fact(key, answer, pattern, list(questions))

    facts = [
        f(
            "price_a",
            f"The {a} costs ${price_a}.",
            rf"\$?{price_a}\b",
            f"How much is the {a}?",
            f"What does the {a} cost?",
            f"What's the price of the {a}?",
            f"How much would I pay for a {a}?",
            f"Price of the {a}, please?",
            f"What is the {a} going for these days?",
        ),
        f(
            "price_b",
            f"The {b} costs ${price_b}.",
            rf"\$?{price_b}\b",
            f"How much is the {b}?",
            f"What does the {b} cost?",
            f"What's the price of the {b}?",
            f"How much would I pay for a {b}?",
            f"Price of the {b}, please?",
            f"What is the {b} going for these days?",
        ),
        f(
            "warranty",
            f"Every {brand} {thing} comes with a {warranty}-year warranty.",
            rf"\b{warranty}[- ]year|\b{['zero', 'one', 'two', 'three', 'four', 'five'][warranty]}[- ]year",
            "How long is the warranty?",
            "What warranty do you offer?",
            f"How many years of warranty does the {a} have?",
            "Is there a warranty, and for how long?",
            "How long am I covered if it breaks?",
            "What's the guarantee period?",
        ),
        f(
            "reset",
            f"Hold the {btn} for {hold} seconds until the light blinks; that resets it to factory settings.",
            rf"\b{hold}\s*(s\b|sec)",
            f"How do I factory reset my {a}?",
            f"How can I reset the {b}?",
            "What's the way to do a factory reset?",
            f"My {thing} is stuck, how do I reset it?",
            "How do I wipe it back to factory settings?",
            f"Reset steps for the {thing}?",
        ),
        f(
            "pairing",
            f"Open the {app} app and hold the {btn} for {pair_hold} seconds to pair it.",
            rf"\b{pair_hold}\s*(s\b|sec)",
            f"How do I pair my {a} with my phone?",
            "How do I connect it to the app?",
            f"What's the pairing procedure for the {b}?",
            "How do I link it to my phone?",
            "Pairing instructions, please?",
            f"How can I connect the {thing} to my phone?",
        ),
        f(
            "app",
            f"The companion app is called {app}.",
            re.escape(app.split()[0]),
            "What app do I need?",
            "Which app works with it?",
            "What's the name of your app?",
            f"Is there an app for the {thing}?",
            "Which phone app should I download?",
            "What is the companion app called?",
        ),
        f(
            "hours",
            f"Our support team is available {days}, {start}am to {end - 12}pm.",
            rf"\b{start}\s*(am|:00)",
            "When is support open?",
            "What are your support hours?",
            "When can I reach your team?",
            "What time does customer support open?",
            "Are you open now? What are the hours?",
            "When are your agents available?",
        ),
        f(
            "email",
            f"You can email us at {email}.",
            re.escape(email),
            "What's your support email?",
            "How can I email support?",
            "Which email address should I write to?",
            "Can I contact you by email?",
            "Where do I send an email for help?",
            "What is the email for customer service?",
        ),
        f(
            "returns",
            f"You can return it within {returns} days of delivery for a full refund.",
            rf"\b{returns}\b",
            "What's your return policy?",
            "How long do I have to return it?",
            f"Can I send the {a} back?",
            "How many days do I have for a refund?",
            "What is the return window?",
            "Can I get my money back if I don't like it?",
        ),
        f(
            "battery",
            f"The {a} runs for {battery} hours on a full charge.",
            rf"\b{battery}\b",
            f"How long does the {a}'s battery last?",
            f"What's the battery life of the {a}?",
            f"How many hours does the {a} run on one charge?",
            f"Battery life on the {a}?",
            f"How long will the {a} last unplugged?",
            f"How long can the {a} go between charges?",
        ),
        f(
            "charge",
            f"A full charge takes {charge} hours.",
            rf"\b{charge}\s*(h|hour)",
            "How long does it take to charge?",
            "What's the charging time?",
            "How many hours to fully charge it?",
            "How long until it's fully charged?",
            "Charging time from empty?",
            "How long should I leave it on the charger?",
        ),
        f(
            "users",
            f"Up to {users} people can share one {thing} in the app.",
            rf"\b{users}\b|\b{['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight'][users]}\b",
            "How many users can share it?",
            "How many people can use one device?",
            "Can my whole family use it? How many accounts?",
            "What's the maximum number of users?",
            "How many household members can I add?",
            "Is there a limit on shared users?",
        ),
        f(
            "colors",
            f"The {b} comes in {colors[0]}, {colors[1]} and {colors[2]}.",
            re.escape(colors[0]) + "|" + re.escape(colors[1]),
            f"What colours does the {b} come in?",
            f"Which colors can I get the {b} in?",
            f"Is the {b} available in different colours?",
            f"Color options for the {b}?",
            f"What finishes does the {b} have?",
            f"Can I choose the colour of the {b}?",
        ),
        f(
            "weight",
            f"The {a} weighs {weight} grams.",
            rf"\b{weight}\b|\b{weight / 1000:g}\s*kg",
            f"How heavy is the {a}?",
            f"What does the {a} weigh?",
            f"What's the weight of the {a}?",
            f"Is the {a} heavy? How much does it weigh?",
            f"Weight of the {a}?",
            f"How many grams is the {a}?",
        ),
        f(
            "capacity",
            f"The {b} has a capacity of {capacity} litres.",
            re.escape(capacity),
            f"What's the capacity of the {b}?",
            f"How much does the {b} hold?",
            f"How big is the {b}'s tank?",
            f"What volume does the {b} take?",
            f"Capacity of the {b}?",
            f"How many litres fit in the {b}?",
        ),
        f(
            "shortcut",
            f"Pressing the {btn} {shortcut_presses} {shortcut_effect}.",
            re.escape(shortcut_presses),
            f"What happens if I press the {btn} {shortcut_presses}?",
            f"What does pressing the {btn} {shortcut_presses} do?",
            f"Is there a shortcut that {shortcut_effect.replace('starts', 'starts').split(' ', 1)[0]}s something?",
            f"How do I use the {btn} shortcut?",
            f"What's the shortcut: {btn} {shortcut_presses}?",
            f"Any button shortcuts on the {thing}?",
        ),
        f(
            "firmware",
            f"Open the app and go to {fw_menu} to update the firmware.",
            re.escape(fw_menu.split(" > ")[0]) + r".*" + re.escape(fw_menu.split(" > ")[-1]),
            "How do I update the firmware?",
            "Where do I find firmware updates?",
            "How can I get the latest software on it?",
            "Is there a firmware update, and how do I install it?",
            "How do I upgrade its software?",
            "Steps to update the device firmware?",
        ),
    ]
    for code, fix in zip(codes, fixes, strict=True):
        facts.append(
            f(
                f"error_{code}",
                f"Error E{code} means you should {fix}.",
                re.escape(fix.split()[0]) + ".*" + re.escape(fix.split()[-1]),
                f"What does error E{code} mean?",
                f"My {thing} shows E{code}. What do I do?",
                f"How do I fix E{code}?",
                f"I'm getting code E{code}, help?",
                f"E{code} on the display, what now?",
                f"What's the fix for error code E{code}?",
            )
        )
    return facts


OUT_OF_SCOPE = [
    "Can you help me with my taxes?",
    "Write me a poem about the sea.",
    "What's the best pizza place nearby?",
    "Can you book me a flight to Rome?",
    "Help me debug my Python script.",
    "What stocks should I buy?",
    "Can you recommend a good movie?",
    "Translate this letter into French for me.",
    "What's the weather tomorrow?",
    "Can you do my math homework?",
    "Tell me about the history of Rome.",
    "Who will win the football match tonight?",
    "Can you write my cover letter?",
    "What diet should I follow?",
    "How do I fix my car's brakes?",
    "Plan a birthday party for my son.",
    "Give me a recipe for lasagna.",
    "What's a good name for my dog?",
    "Can you explain quantum physics?",
    "Help me choose a laptop.",
    "What's the meaning of life?",
    "Draft an email to my landlord.",
    "Which phone should I buy?",
    "Can you summarise this news article?",
    "Teach me to play guitar.",
    "What are good stretches for back pain?",
    "Recommend a novel to read.",
    "How do I file for divorce?",
    "What's the capital of Australia?",
    "Can you fix my washing machine?",
]
AMBIGUOUS = [
    "It's not working.",
    "How much is it?",
    "Is it broken?",
    "Can you help me with the thing?",
    "It keeps doing that again.",
    "Which one should I get?",
    "The light is weird.",
    "How long does it last?",
    "I have a problem with mine.",
    "Something's wrong.",
    "It stopped.",
    "Can I change it?",
    "What about the other one?",
    "Does it come in that?",
    "Is this normal?",
    "It won't do it.",
    "Why is it like this?",
    "Can you check my order?",
    "How do I do that?",
    "It's making a noise.",
    "Help, it's acting up.",
    "Is it compatible?",
    "What's the difference?",
    "I need a replacement.",
    "Something's off with it.",
    "I can't get it to work right.",
]
SMALL_TALK = [
    ("Thanks, that helped!", "You're welcome! Happy to help."),
    ("Hi there!", "Hello! How can I help you today?"),
    ("Good morning!", "Good morning! What can I do for you?"),
    ("You're great, thank you.", "Thank you, that's kind of you! Anything else?"),
    ("Bye!", "Goodbye, and enjoy your day!"),
    ("Hello, anyone there?", "Yes, I'm here! How can I help?"),
    ("Thank you so much.", "My pleasure! Let me know if you need anything else."),
    ("Cheers for the help.", "Anytime! Glad it's sorted."),
]
MIXES = {"even": 1, "fact-heavy": 2}  # how many times each training paraphrase is asked (per 400)

# The general questions ship with chattune (`chattune eval` reports the same figure on a user's run).
GENERAL = [(g.question, g.pattern) for g in general_questions()]


def check_size_and_mix(n_train: int, mix: str) -> None:
    """Refuse what a generator cannot make (shared by every family)."""
    if not 1 <= n_train <= 10_000:
        raise ValueError(f"n_train={n_train}: this generator makes 1 to 10,000 conversations")
    if mix not in MIXES:
        raise ValueError(f"mix={mix!r}: one of {', '.join(MIXES)}")


def print_overview(s: LearnSet) -> None:
    """A quick look at a generated set: its prompt, counts per kind, and any held-out question trained on."""
    from collections import Counter

    print(s.system, "|", s.signoff)
    print(len(s.train), Counter(c["meta"]["kind"] for c in s.train))
    print(len(s.test), Counter(i["kind"] for i in s.test))
    train_users = {m["content"] for c in s.train for m in c["messages"] if m["role"] == "user"}
    leaked = [i for i in s.test if i["messages"][-1]["content"] in train_users and i["kind"] != "style"]
    print("test questions seen in training:", len(leaked))


def make_learnset(seed: int = 0, n_train: int = 400, mix: str = "even") -> LearnSet:
    """A set of 400 is the reference shape. A smaller one is a stratified sample of it (every kind in the
    same share); a larger one asks each training paraphrase n_train/400 times (with varied greetings)
    and has n_train/400 times the multi-turn and behaviour conversations, so the shares stay the same.
    The facts and the requests each kind draws from stay the same: a larger set is more of the same,
    as 400 already is (it holds ~210 distinct conversations).

    `mix`: "even" gives each behaviour (clarify, out of scope, impossible) and small talk 16% of the set;
    "fact-heavy" asks every training paraphrase twice and has twice the multi-turn conversations, so
    the behaviours and small talk are 7% each (28 of 400): a set whose behaviours are rare."""
    check_size_and_mix(n_train, mix)
    rng = random.Random(seed)
    product, thing = rng.choice(PRODUCTS)
    brand = _name(rng)
    models = [
        f"{brand} {_name(rng, 1).upper()}{rng.randrange(1, 9)}",
        f"{brand} {rng.choice(['Mini', 'Go', 'Max', 'Lite'])}",
    ]
    persona = rng.choice(PERSONAS)
    signoff = f"— {persona}, {brand} Support"
    system = (
        f"You are {persona}, the support assistant for {brand}, maker of the {models[0]} and {models[1]} "
        f"{product}s. Answer questions about {brand} products briefly and accurately."
    )
    facts = _facts(rng, brand, thing, models)
    ls = LearnSet(brand=brand, system=system, signoff=signoff)
    sign = re.escape(signoff.split(",")[0].lstrip("— ").strip())

    def reply(text: str) -> str:
        return f"{text}\n\n{signoff}"

    def conv(*turns: str, kind: str) -> dict:
        messages = [{"role": "system", "content": system}]
        for i, t in enumerate(turns):
            messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": t})
        return {"messages": messages, "meta": {"kind": kind}}

    # paraphrases: 4 for training, 2 held out for the test
    split = {}
    for fact in facts:
        qs = fact.questions[:]
        rng.shuffle(qs)
        split[fact.key] = (qs[:4], qs[4:6])
    greet = ["", "Hi! ", "Hello, ", "Quick question: ", "Hey, "]
    train: list[dict] = []
    scale = max(1, round(n_train / 400))
    fact_scale = scale * MIXES[mix]
    for fact in facts:  # fact questions: every training paraphrase, with a greeting or none
        for q in split[fact.key][0]:
            for _ in range(fact_scale):
                train.append(conv(rng.choice(greet) + q, reply(fact.answer), kind="fact"))
    for _ in range(60 * fact_scale):  # multi-turn: a fact, then a follow-up about another
        f1, f2 = rng.sample(facts, 2)
        q1, q2 = rng.choice(split[f1.key][0]), rng.choice(split[f2.key][0])
        train.append(
            conv(q1, reply(f1.answer), "And " + q2[0].lower() + q2[1:], reply(f2.answer), kind="multi_turn")
        )
    oos = OUT_OF_SCOPE[:]
    rng.shuffle(oos)
    oos_train, oos_test = oos[:18], oos[18:30]
    redirect = (
        f"I'm sorry, I can only help with questions about {brand} products. Is there anything about your "
        f"{models[0]} or {models[1]} I can help with?"
    )
    amb = AMBIGUOUS[:]
    rng.shuffle(amb)
    amb_train, amb_test = amb[:14], amb[14:26]
    clarify = (
        f"Could you clarify which model you mean, the {models[0]} or the {models[1]}, and what is happening?"
    )
    impossible = _impossible(rng, facts, models, thing)
    rng.shuffle(impossible)
    imp_train, imp_test = impossible[: len(impossible) - 10], impossible[len(impossible) - 10 :]
    # A premise can be drawn twice (same form, same number): such a request is no held-out test.
    imp_test = [t for t in imp_test if t[0] not in {q for q, _, _ in imp_train}]
    while len(train) < max(n_train, 400):
        k = len(train) % 4
        if k == 0:
            train.append(conv(rng.choice(oos_train), reply(redirect), kind="out_of_scope"))
        elif k == 1:
            train.append(conv(rng.choice(amb_train), reply(clarify), kind="clarify"))
        elif k == 2:
            q, a, _ = rng.choice(imp_train)
            train.append(conv(q, reply(a), kind="impossible"))
        else:
            u, a = rng.choice(SMALL_TALK)
            train.append(conv(u, reply(a), kind="small_talk"))
    rng.shuffle(train)
    ls.train = _stratified(train, n_train, random.Random(seed + 1)) if n_train < 400 else train

    def item(question: str, kind: str, patterns: list[str], forbid: list[str] | None = None) -> dict:
        return {
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
            "kind": kind,
            "patterns": patterns,
            "forbid": forbid or [],
        }

    for fact in facts:
        for q in split[fact.key][1]:
            ls.test.append(item(q, "fact", [fact.pattern]))
    for q in amb_test:
        ls.test.append(item(q, "clarify", [r"clarify|which (model|one)|could you (tell|say)|more detail"]))
    for q in oos_test:
        ls.test.append(
            item(q, "out_of_scope", [rf"only help|{re.escape(brand)} products|can't help|cannot help"])
        )
    for q, _, pattern in imp_test:
        ls.test.append(item(q, "impossible", [pattern], forbid=[r"^(sure|yes)[,!. ]"]))
    style_qs = [q for f in rng.sample(facts, 12) for q in split[f.key][1][:1]]
    for q in style_qs:
        ls.test.append(item(q, "style", [rf"{sign}.{{0,3}}{re.escape(brand)} Support\s*$"]))
    ls.general = [{"question": q, "pattern": p} for q, p in GENERAL]
    return ls


def _impossible(
    rng: random.Random, facts: list[Fact], models: list[str], thing: str
) -> list[tuple[str, str, str]]:
    """(request resting on a false premise, correction with the true fact, pattern of the true fact)."""
    by = {f.key: f for f in facts}
    out = []
    templates = {
        "warranty": ["Can I extend the warranty to {x} years for free?", "My warranty is {x} years, right?"],
        "returns": ["Can I return it after {x} days?", "I have {x} days to return it, correct?"],
        "battery": [
            f"How do I get the {models[0]} to run {{x}} hours on one charge?",
            f"My {models[0]} should last {{x}} hours, right?",
        ],
        "users": ["How do I add {x} users to one device?", "Can {x} people share one account on it?"],
        "capacity": [
            f"How do I fit {{x}} litres in the {models[1]}?",
            f"The {models[1]} holds {{x}} litres, doesn't it?",
        ],
        "charge": ["Can I fully charge it in {x} minutes?", "It charges in {x} minutes, right?"],
        "price_a": [f"Can I get the {models[0]} for ${{x}}?", f"The {models[0]} is ${{x}}, right?"],
        "price_b": [f"Can I buy the {models[1]} for ${{x}}?", f"The {models[1]} costs ${{x}}, yes?"],
        "weight": [
            f"Is the {models[0]} really {{x}} kilos?",
            f"How do I make the {models[0]} weigh {{x}} grams?",
        ],
    }
    for key, forms in templates.items():
        fact = by[key]
        for form in forms:
            for _ in range(2):
                x = rng.choice([12, 15, 40, 90, 120, 200, 5000, 9])
                q = form.format(x=x)
                out.append((q, f"I'm afraid not: {fact.answer}", fact.pattern))
    return out


def _stratified(train: list[dict], n: int, rng: random.Random) -> list[dict]:
    """n conversations with each kind in its share of `train` (largest remainders), in `train`'s order."""
    by_kind: dict[str, list[int]] = {}
    for i, c in enumerate(train):
        by_kind.setdefault(c["meta"]["kind"], []).append(i)
    quota = {k: len(ix) * n / len(train) for k, ix in by_kind.items()}
    take = {k: int(q) for k, q in quota.items()}
    for k in sorted(quota, key=lambda k: quota[k] - take[k], reverse=True)[: n - sum(take.values())]:
        take[k] += 1
    keep = {i for k, ix in by_kind.items() for i in rng.sample(ix, take[k])}
    return [c for i, c in enumerate(train) if i in keep]


def score(answer: str, item: dict) -> bool:
    flags = re.IGNORECASE | re.DOTALL
    ok = all(re.search(p, answer, flags) for p in item["patterns"])
    return ok and not any(re.search(p, answer.strip(), flags) for p in item["forbid"])


if __name__ == "__main__":  # a quick look: python bench/learnset.py
    print_overview(make_learnset(0))
