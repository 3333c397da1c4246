"""`train.recipe: auto`: the hyperparameters a run needs, chosen from the data, the model and the method.

    cfg, choices = resolve_recipe(cfg, shape, n_params)      # keys the config sets explicitly are kept

Why it exists: packing puts ~10-25 short conversations into each row, so a learning rate and an epoch
count that suit unpacked batches leave a packed run with a handful of optimizer steps: 400 support
conversations at the class defaults (lr 2e-5, 1 epoch, rows of 1,024) are 8 steps, and the model learns
nothing. The rule below was calibrated with `bench/bench_learn.py` (README, "Recipe auto"):

- a conversation repeated word for word is trained once (MAX_COPIES), as `chattune data prepare` would
  leave it: template-made sets repeat their small talk and stock replies (each of the benchmark's products
  holds 206-240 distinct conversations in 400, one 14 times), and every repeat spends the compute bound on
  what the model has seen, not on the facts. Rehearsal stays counted on the conversations as read. Over
  nine one-line-prompt products held-out rose from 80.5% to 84.7% (general kept 75.8% -> 76.3%); under a
  long prompt one family rose 10 points and another fell 7 (docs/recipe-measurements.md, "Repeated
  conversations");
- rows are as long as the longest conversation needs (a power of two, 256 to data.max_length), so a row
  holds a few conversations and a step sees a controlled number of them;
- epochs: enough passes that ~TARGET_SEEN conversations go by (a small set needs several passes for
  its facts to stick; a large one needs one), 1 to 10, and no more passes than keep the run within
  COMPUTE_BUDGET computed tokens of the user's data (never under one pass). Computed tokens are the
  tokens less the conversations' shared beginnings (a system prompt is computed once per micro-batch on
  CPU), which is what a run's time follows: ~400 support conversations compute 21,000-24,000 tokens a
  pass whether their system prompt is one line or four, so they get ~2.2-2.8 passes, ~4 minutes on 2
  cores. The same count on every machine, so a run's recipe does not depend on where it trains; but as it
  trains, a run on a machine whose pace would take those passes past PACED_SECONDS gives some of them back
  (paced_epochs; never under PACED_MIN_EPOCHS), since the same 2 cores run at half pace on some days;
- conversations per optimizer step: CONVS_PER_STEP, growing with the square root of what the run sees
  (anchored at BATCH_ANCHOR_SEEN), so small sets get many small steps and large sets larger batches
  (up to 64);
- learning rate: PEAK_LR for a 135M model, scaled by sqrt(135M / parameters) (larger models want
  smaller steps), x10 for LoRA (only the small adapter moves);
- warm-up: 5% of the steps; cosine decay (the class default) to 0;
- where the data redirects off-topic requests, scope pairs (scope_pairs.py): general requests asked
  under the data's system prompt and answered with its redirect, a tenth as many as its conversations
  (no more than it redirects itself);
  over six benchmark products out of scope rose from 71% to 93% at the same held-out;
- where the data asks its vague requests back ("Could you clarify ...?"), clarify pairs
  (clarify_pairs.py): shipped vague requests asked under its system prompt and answered with its
  clarifying question, a tenth as many as its conversations (no more than it asks back itself); over
  eight benchmark products held-out rose from 83.0% to 86.4% and clarify from 71.8% to
  77.1%, general kept the same;
- full fine-tuning keeps the token embeddings and output head frozen: on three of the benchmark's support
  sets the domain was learned as well, general answers were kept a little better on average, and training
  took ~10% less time (README, "Recipe auto").

Checked on the benchmark at 100, 400, 2,000 and 10,000 conversations (77%, 89%, 90%, 86% held-out;
docs/recipe-measurements.md, "Data-set size"; measured before the compute bound, with 8, 2, 1 and 1
passes), and the bounded passes on three generator families (docs/recipe-measurements.md, "The rule of
2026-12-06").

It is a pure function of the data shape and the model size, so `chattune validate` and `chattune train`
agree, and a config saved and loaded again resolves to the same values. The one thing decided while
training, the passes paced to a slow machine, is recorded in the run's recipe.json, which `--resume` reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from chattune.config import RunConfig

TARGET_SEEN = 1200  # conversations seen over the whole run, before the 1..10 epoch clamp
COMPUTE_BUDGET = 56_000  # computed tokens of the user's data over the run, beyond the first pass (~4 min)
PACED_SECONDS = 240  # training time the recipe's passes may fill on the machine at hand ...
PACED_MIN_EPOCHS = 2.0  # ... but pacing leaves at least this many (or the data's own, if fewer)
PACE_CHECK_EVERY = 10  # optimizer steps between looks at the machine's pace (first half of a run only)
# The pace is the median duration of the last PACE_WINDOW steps: an evaluation, a checkpoint or a busy
# moment on the machine slows a step or a few, not the pace.
PACE_WINDOW = 20
BATCH_ANCHOR_SEEN = 800  # conversations seen at which a step holds CONVS_PER_STEP of them
CONVS_PER_STEP = 8  # conversations per optimizer step at BATCH_ANCHOR_SEEN; grows with sqrt(seen)
PEAK_LR = 2e-4  # full fine-tuning of a 135M model
REFERENCE_PARAMS = 135e6
LORA_LR_FACTOR = 10.0
WARMUP_RATIO = 0.05
REHEARSAL = 0.15  # share of rehearsal conversations added to the user's
CLARIFY_PAIRS = 0.1  # share of clarify pairs added where the data asks vague requests back
SCOPE_PAIRS = 0.1  # share of scope pairs added where the data redirects off-topic requests
MAX_COPIES = 1  # copies kept of a conversation the data repeats word for word
MAX_TOKENS_PER_MICRO_BATCH = 4096  # beyond this a step accumulates gradients (memory stays flat)


@dataclass(frozen=True)
class DataShape:
    """What the recipe needs to know about the training data (after tokenisation)."""

    conversations: int
    longest: int  # tokens of the longest conversation (after data.max_length truncation)
    tokens: int  # all tokens of all conversations
    prefix_saving: float = 0.0  # share of them that shared prefixes skip (0 where batches are not shared)
    prefix_share: float = 0.0  # share of them that repeat a micro-batch neighbour's beginning, on any machine
    redirect: str | None = None  # the data's redirect of off-topic requests, described (scope_pairs.py)
    redirect_unknown: str | None = None  # why no redirect was looked for
    clarify: str | None = None  # the data's clarifying question, described (clarify_pairs.py)
    clarify_unknown: str | None = None  # why none was looked for
    copies_left_out: int = 0  # repeats past data.max_copies, left out before `conversations` was counted


@dataclass(frozen=True)
class Choice:
    key: str  # dotted, e.g. "train.epochs"
    value: float | int
    why: str


def copies_kept(cfg: RunConfig) -> int | None:
    """How many copies of a repeated conversation training keeps (None: all). Needed before the data is
    read, so it rests on the config alone: what the user set, else MAX_COPIES under recipe auto."""
    if cfg.train.recipe != "auto" or cfg.user_set("data", "max_copies"):
        return cfg.data.max_copies
    return MAX_COPIES


def resolve_recipe(
    cfg: RunConfig,
    shape: DataShape,
    n_params: int | None,
    world_size: int = 1,
    seconds_per_token: float | None = None,
) -> tuple[RunConfig, list[Choice]]:
    """The config with every auto key the user left unset filled in, and what was chosen and why.

    With `train.recipe: manual`, or when every key is set, the config comes back unchanged."""
    if cfg.train.recipe != "auto" or shape.conversations == 0:
        return cfg, []
    out = cfg.model_copy(deep=True)
    choices: list[Choice] = []

    def choose(section: str, key: str, value: float | int, why: str) -> float | int:
        if cfg.user_set(section, key):
            user_value: float | int = getattr(getattr(cfg, section), key)  # a numeric key (see callers)
            return user_value
        setattr(getattr(out, section), key, value)
        out.auto_keys.add(f"{section}.{key}")
        choices.append(Choice(f"{section}.{key}", value, why))
        return value

    left_out = shape.copies_left_out
    choose(
        "data",
        "max_copies",
        MAX_COPIES,
        f"{left_out} conversation(s) repeating another word for word left out (data_stats.json names them): "
        "the compute goes to what is new"
        if left_out
        else "no conversation repeats another word for word",
    )
    longest_pow2 = 1 << max(8, math.ceil(math.log2(max(shape.longest, 1))))
    max_length = choose(
        "data",
        "max_length",
        min(cfg.data.max_length, longest_pow2),
        f"the longest conversation is {shape.longest} tokens: rows of this length pack a few conversations "
        "each, so a step sees a controlled number of them",
    )
    n = shape.conversations
    epochs_for_data: float = min(10, max(1, TARGET_SEEN // n))
    why = f"{n} conversations: ~{TARGET_SEEN:,} seen in all (1 to 10 passes) lets a small set's facts stick"
    computed = shape.tokens * (1 - shape.prefix_share)
    if epochs_for_data > 1 and epochs_for_data * computed > COMPUTE_BUDGET:
        # Passes beyond the first are bounded by compute, so a small set trains in minutes; rounded down
        # to a tenth so the bound holds. Deterministic from the data, so `validate`, `train` and a resumed
        # run agree.
        epochs_for_data = max(1.0, math.floor(10 * COMPUTE_BUDGET / computed) / 10)
        why = (
            f"{n} conversations, {computed:,.0f} tokens computed a pass ({shape.tokens:,} less shared "
            f"beginnings): passes toward ~{TARGET_SEEN:,} seen, at most ~{COMPUTE_BUDGET:,} computed in all"
        )
    budget = cfg.train.time_budget_minutes
    if budget and seconds_per_token:
        # Rehearsal conversations carry no domain system prompt: they are counted whole.
        rehearsal = cfg.train.rehearsal if cfg.user_set("train", "rehearsal") else REHEARSAL
        computed = shape.tokens * (1 - shape.prefix_saving + rehearsal)
        tokens_per_epoch = computed * (1.0 if cfg.train.method == "full" else 0.7)
        fits = 0.9 * budget * 60 / (tokens_per_epoch * seconds_per_token)
        if fits < epochs_for_data:
            epochs_for_data = max(0.1, round(fits, 1))
            saving = f"; shared prefixes skip ~{shape.prefix_saving:.0%}" if shape.prefix_saving else ""
            why = f"what fits train.time_budget_minutes={budget:g} (~{1 / seconds_per_token:,.0f} tokens/s{saving})"
    if epochs_for_data > PACED_MIN_EPOCHS and not (budget or cfg.train.max_steps):
        why += (
            f"; fewer (not under {PACED_MIN_EPOCHS:g}) if the first steps show this machine would train past "
            f"~{PACED_SECONDS // 60} minutes"
        )
    epochs = choose("train", "epochs", float(epochs_for_data), why)
    seen = n * epochs
    convs_per_step = min(64, max(CONVS_PER_STEP, round(CONVS_PER_STEP * math.sqrt(seen / BATCH_ANCHOR_SEEN))))
    # Rows per step from how densely conversations pack at the chosen length.
    mean_tokens = shape.tokens / n
    convs_per_row = max(1.0, int(max_length) / mean_tokens * 0.93)  # packing fills rows ~93%
    rows_per_step = max(1, round(convs_per_step / convs_per_row / world_size))
    per_micro = max(1, MAX_TOKENS_PER_MICRO_BATCH // int(max_length))
    batch_size = choose(
        "train",
        "batch_size",
        min(rows_per_step, per_micro),
        f"~{convs_per_step} conversations per optimizer step (~{convs_per_row:.1f} per row"
        + (f", {world_size} processes" if world_size > 1 else "")
        + "): many small steps for a small set",
    )
    choose(
        "train",
        "grad_accum",
        max(1, math.ceil(rows_per_step / int(batch_size))),
        f"at most {MAX_TOKENS_PER_MICRO_BATCH} tokens per micro-batch; the rest of a step is accumulated",
    )
    params = n_params or REFERENCE_PARAMS
    lr = PEAK_LR * math.sqrt(REFERENCE_PARAMS / params)
    lora = cfg.train.method in ("lora", "qlora")
    if lora:
        lr *= LORA_LR_FACTOR
    choose(
        "train",
        "learning_rate",
        float(f"{lr:.2g}"),
        f"{PEAK_LR:g} for 135M parameters x sqrt(135M / {params / 1e6:,.0f}M)"
        + (f" x {LORA_LR_FACTOR:g} for LoRA" if lora else ""),
    )
    if cfg.train.method == "full":
        choose(
            "train",
            "freeze_embeddings",
            True,
            "the token embeddings and output head keep the base model's values: on the benchmark's support "
            "sets the domain was learned as well, in ~10% less time and ~0.6 GB less memory",
        )
    choose(
        "train",
        "rehearsal",
        REHEARSAL,
        "the base model's own answers to general requests keep its general ability (rehearsal.py)",
    )
    if shape.redirect:
        choose(
            "train",
            "scope_pairs",
            SCOPE_PAIRS,
            f"{shape.redirect}: general requests asked under its system prompt and redirected tie the "
            "redirect to the prompt, not to the requests it happened to see (scope_pairs.py)",
        )
    else:
        choose(
            "train", "scope_pairs", 0.0, shape.redirect_unknown or "the data redirects no off-topic requests"
        )
    if shape.clarify:
        choose(
            "train",
            "clarify_pairs",
            CLARIFY_PAIRS,
            f"{shape.clarify}: more vague requests asked back show where the line lies (clarify_pairs.py)",
        )
    else:
        choose(
            "train",
            "clarify_pairs",
            0.0,
            shape.clarify_unknown or "the data answers no vague request with a question",
        )
    if cfg.train.warmup_steps is None:  # warm-up given in steps by the user excludes a ratio
        choose("train", "warmup_ratio", WARMUP_RATIO, "a short linear warm-up, then cosine decay")
    return out, choices


def paces_epochs(cfg: RunConfig) -> bool:
    """Whether the run's passes may be fitted to the machine's pace as it trains: recipe auto chose more
    than PACED_MIN_EPOCHS, and the user gave neither a step count nor a time budget."""
    return (
        cfg.train.recipe == "auto"
        and "train.epochs" in cfg.auto_keys
        and cfg.train.epochs > PACED_MIN_EPOCHS
        and not cfg.train.max_steps
        and not cfg.train.time_budget_minutes
    )


def paced_epochs(
    planned: Choice, steps_per_epoch: float, steps_done: int, seconds: float, seconds_per_step: float
) -> Choice:
    """The passes that fit PACED_SECONDS at this pace: `planned` (the data's choice) when all of them fit,
    else fewer, in tenths as the compute bound rounds, never under PACED_MIN_EPOCHS (nor the planned
    passes, if fewer) nor under the steps taken. Asked again as the run goes, it gives passes back when
    the pace recovers.

    Why: the compute bound is a token count, the same on every machine, sized to ~4 minutes of training on
    2 cores at full pace; the same 2 cores ran the same steps at half that pace on other days (350-420
    tokens/s against 683-765), and a default run then trained ~300 s, so on a slower machine the recipe
    gives fewer passes. Not fewer than two: on a machine a quarter as fast again (AVX2 only, fp32, ~100
    tokens/s) one pass learned far less than two (held-out 59% against 77%, facts 48% against 71%;
    docs/recipe-measurements.md, "Passes paced to the machine"): there the default trains longer and learns."""
    planned_steps = planned.value * steps_per_epoch
    projected = seconds + (planned_steps - steps_done) * seconds_per_step
    fit = math.floor(10 * (steps_done + (PACED_SECONDS - seconds) / seconds_per_step) / steps_per_epoch) / 10
    # ... and the one step after those taken: the run ends on a step.
    floor = max(min(planned.value, PACED_MIN_EPOCHS), math.ceil(10 * (steps_done + 1) / steps_per_epoch) / 10)
    paced = max(floor, fit)
    if projected <= PACED_SECONDS or paced >= planned.value:
        return planned
    return Choice(
        planned.key,
        paced,
        f"fitted to this machine's pace: {seconds_per_step:.2f} s a step (the median of the last {PACE_WINDOW}) "
        f"after {steps_done} steps in {seconds:.0f} s, so {planned.value:g} passes would train ~{projected:.0f} s, "
        f"past the ~{PACED_SECONDS} s they may fill (never under {PACED_MIN_EPOCHS:g}); "
        f"train.epochs={planned.value:g} trains them all",
    )


def describe(choices: list[Choice]) -> list[str]:
    """One line per choice, for the console and the run's config.yaml."""
    return [f"{c.key} = {_shown(c.value)}: {c.why}" for c in choices]


def _shown(value: float | int) -> str:
    return str(value).lower() if isinstance(value, bool) else f"{value:g}"
